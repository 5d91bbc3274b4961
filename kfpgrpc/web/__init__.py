"""The web UI's files (static/), served by kfpgrpc/http/ui.py under /ui/; see docs/ui.md."""
