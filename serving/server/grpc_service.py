"""The development server's gRPC API: TF Serving's services over a manager.

  tensorflow.serving.PredictionService/Predict, /GetModelMetadata
  tensorflow.serving.ModelService/GetModelStatus  (the served version
                                                  AVAILABLE, earlier ones END)

Other methods (Classify, Regress, HandleReloadConfigRequest) answer
UNIMPLEMENTED. Request errors (`input_checks.ServingError`) abort the call
with their status code; the server keeps serving.
"""

from concurrent import futures
import functools
import logging
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.server import model_manager
from trainer import schema
from serving.server import input_checks

_LOG = logging.getLogger(__name__)
SIGNATURE_DEF_FIELD = "signature_def"


def signature_def_map(
    loaded: model_manager.LoadedVersion
) -> get_model_metadata_pb2.SignatureDefMap:
  """Every SignatureDef of a version, as GetModelMetadata returns them."""
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  for name, signature_def in loaded.signature_defs.items():
    signature_map.signature_def[name].CopyFrom(signature_def)
  return signature_map


def _requested_version(request) -> Optional[int]:
  return (request.model_spec.version.value
          if request.model_spec.HasField("version") else None)


def predict_response(manager: model_manager.ModelManager,
                     request: predict_pb2.PredictRequest
                     ) -> predict_pb2.PredictResponse:
  """Answers one PredictRequest.

  Raises:
    input_checks.ServingError: NOT_FOUND (model, version) or
      INVALID_ARGUMENT (signature, inputs, output_filter).
  """
  loaded = manager.get(request.model_spec.name, _requested_version(request))
  signature_name = (request.model_spec.signature_name
                    or schema.SERVING_DEFAULT_SIGNATURE)
  if signature_name not in loaded.input_specs:
    raise input_checks.unknown_signature(signature_name, loaded.signatures)
  specs = loaded.input_specs[signature_name]
  for key, proto in sorted(request.inputs.items()):
    # Before tf.make_ndarray, which allocates the declared shape: one value
    # declared [16384, 16384] would become 1 GiB.
    spec = specs.get(key)
    loaded.bounds.check_declared_shape(
        key, [dim.size for dim in proto.tensor_shape.dim],
        spec.shape.rank if spec is not None else None)
  try:
    inputs = {key: tf.make_ndarray(proto)
              for key, proto in request.inputs.items()}
  except (TypeError, ValueError) as error:
    raise input_checks.invalid_argument(
        f"Cannot read input tensors: {error}") from None
  outputs = loaded.predict(signature_name, inputs)
  response = predict_pb2.PredictResponse()
  response.model_spec.name = manager.model_name
  response.model_spec.version.value = loaded.version
  response.model_spec.signature_name = signature_name
  for key in request.output_filter or outputs:
    if key not in outputs:
      raise input_checks.invalid_argument(
          f"output_filter names {key!r}; outputs are {sorted(outputs)}.")
    response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
  return response


def _answers_errors(method: Callable) -> Callable:
  """Aborts with a `ServingError`'s code; anything else is INTERNAL.

  An unexpected error's detail goes to the server log under a request id;
  the client gets the id alone (no exception text, no paths).
  """
  @functools.wraps(method)
  def answering(self, request, context):
    try:
      return method(self, request, context)
    except input_checks.ServingError as error:
      context.abort(error.code, error.message)
    except Exception:  # pylint: disable=broad-except
      request_id = input_checks.new_request_id()
      _LOG.exception("gRPC %s failed (request id %s)", method.__name__,
                     request_id)
      context.abort(grpc.StatusCode.INTERNAL,
                    input_checks.internal_error_message(request_id))
  return answering


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """gRPC Predict and GetModelMetadata (Classify, Regress: UNIMPLEMENTED)."""

  def __init__(self, manager: model_manager.ModelManager):
    self._manager = manager

  @_answers_errors
  def Predict(self, request, context):  # pylint: disable=invalid-name
    return predict_response(self._manager, request)

  @_answers_errors
  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    loaded = self._manager.get(request.model_spec.name,
                               _requested_version(request))
    fields = list(request.metadata_field)
    if fields != [SIGNATURE_DEF_FIELD]:
      raise input_checks.invalid_argument(
          f"metadata_field must be [{SIGNATURE_DEF_FIELD!r}]; got {fields}.")
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = self._manager.model_name
    response.model_spec.version.value = loaded.version
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_def_map(loaded))
    return response


def status_response(states: Sequence[Tuple[int, str]],
                    errors: Optional[Mapping[int, Tuple[str, str]]] = None
                    ) -> get_model_status_pb2.GetModelStatusResponse:
  """GetModelStatus's answer for `ModelManager.version_states`.

  `errors` ({version: (code name, message)}, `ModelManager.version_errors`)
  fills the status of versions that failed to load.

  Example: [(1, "AVAILABLE"), (2, "END")], {2: ("UNKNOWN", "bad")} ->
  model_version_status [{version: 1, state: AVAILABLE}, {version: 2,
  state: END, status: {error_code: UNKNOWN, error_message: "bad"}}].
  """
  response = get_model_status_pb2.GetModelStatusResponse()
  for version, state in states:
    status = response.model_version_status.add()
    status.version = version
    status.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
    if version in (errors or {}):
      code, message = errors[version]
      status.status.error_code = error_codes_pb2.Code.Value(code)
      status.status.error_message = message
  return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
  """gRPC GetModelStatus (HandleReloadConfigRequest: UNIMPLEMENTED)."""

  def __init__(self, manager: model_manager.ModelManager):
    self._manager = manager

  @_answers_errors
  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    return status_response(
        self._manager.version_states(request.model_spec.name,
                                     _requested_version(request)),
        self._manager.version_errors())


def start_grpc_server(
    manager: model_manager.ModelManager, host: str, port: int,
    max_workers: int,
    max_request_bytes: int = model_manager.DEFAULT_MAX_REQUEST_BYTES
) -> Tuple[Any, int]:
  """Starts both services on `host:port` (0: a free port).

  Requests over `max_request_bytes` are refused by gRPC before they are
  parsed (RESOURCE_EXHAUSTED); answers go up to
  `schema.MAX_GRPC_MESSAGE_BYTES`, the client's receive limit.

  Returns:
    (the started `grpc.Server`, the bound port).

  Raises:
    ValueError: when the port cannot be bound.
  """
  server = grpc.server(
      futures.ThreadPoolExecutor(max_workers=max_workers),
      options=[("grpc.max_send_message_length",
                schema.MAX_GRPC_MESSAGE_BYTES),
               ("grpc.max_receive_message_length", max_request_bytes)])
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionServicer(manager), server)
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(
      ModelServicer(manager), server)
  bound_port = server.add_insecure_port(f"{host}:{port}")
  if not bound_port:
    raise ValueError(f"Cannot bind gRPC to {host}:{port} (--port); is it in "
                     "use?")
  server.start()
  return server, bound_port
