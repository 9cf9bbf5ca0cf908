"""The national-interface JSON gateway: the platform's HTTP envelope
(`POST /fsi/api/rsfComIfsService/callService`) served beside gRPC, through
the same service layer (docs/gateway.md)."""
