"""Development server layer: `LocalModelServer` speaking TF Serving's gRPC and
REST APIs (`local_server`), its loaded versions (`model_manager`), the
in-process SavedModel session (`saved_model_session`), request checks
(`input_checks`), the gRPC services (`grpc_service`) and the REST front with
its limits and timeouts (`rest_api`). Never imports `serving.client` or
`serving.demo`: the demo page is mounted into it by the command."""
