"""The gRPC layer: thin servicers that translate protobuf to domain calls, and interceptors."""
