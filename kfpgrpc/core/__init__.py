"""The server core: business rules over the store, independent of gRPC."""
