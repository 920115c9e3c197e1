"""Development server layer: `LocalModelServer` speaking TF Serving's gRPC and
REST APIs (`local_server`), its loaded versions (`model_manager`) and how their
folders load (`version_loading`), the in-process SavedModel session
(`saved_model_session`), request checks (`input_checks`) and size bounds
checked before allocation (`request_bounds`), the gRPC services
(`grpc_service`), the REST API (`rest_api`) and what its front checks first:
deadlines, connections per client, Host and Origin (`rest_guards`). Never
imports `serving.client` or `serving.demo`: the demo page is mounted into it
by the command."""
