"""The Open Inference Protocol (KServe V2) over gRPC: the protocol's proto
(grpc_predict_v2.proto), its generated modules (regenerate with
`python -m edgecascade.tools.grpc_codegen`), and the conversion between its messages and the
codec's InferRequest / InferResponse, shared by the cloud's gRPC service and the device's client.
Needs grpcio and protobuf (the `grpc` or `cloud` extra)."""
