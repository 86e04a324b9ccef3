"""The REST front: Envoy with grpc_json_transcoder over the descriptor set built from proto/."""
