"""The gRPC edge: servicers, interceptors, status mapping, bootstrap."""
