"""Generated protobuf and gRPC modules of the kfpgrpc.v1 API (scripts/generate_protos.py)."""
