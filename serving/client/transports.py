"""How the client talks to a served model: gRPC, REST, or in process.

Every transport has one method, `predict(signature_name, inputs) -> outputs`
(numpy arrays in and out, keyed by the signature's input and output names),
and `close()`:

  `GrpcTransport`        TF Serving's gRPC `PredictionService/Predict`
  `RestTransport`        TF Serving's `POST /v1/models/<name>:predict`
  `SavedModelTransport`  calls the SavedModel in this process (tests, bench),
                         in a thread mode: "latency" or "throughput"

The wire formats are pure functions tested without a server:
`build_predict_request`/`parse_predict_response` (gRPC protos) and
`build_rest_body`/`parse_rest_outputs` (REST JSON, columnar format). Failures
are `PredictionError`s carrying the gRPC status name, also for REST.
"""

import base64
import json
import time
from typing import Any, Callable, Dict, Mapping, Optional, TypeVar
import urllib.error
import urllib.request

import numpy as np

from trainer.export import export_versions
from trainer import schema
from serving.client.errors import PredictionError
from serving.server import saved_model_session

GRPC = "grpc"
REST = "rest"
PROTOCOLS = (GRPC, REST)
Arrays = Dict[str, np.ndarray]
_Result = TypeVar("_Result")


# --- Wire formats ---------------------------------------------------------------


def build_predict_request(inputs: Mapping[str, np.ndarray], model_name: str,
                          signature_name: str, version: Optional[int] = None):
  """A `tensorflow_serving.apis.predict_pb2.PredictRequest` for `inputs`."""
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  if version is not None:
    request.model_spec.version.value = int(version)
  for key, value in inputs.items():
    request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
  return request


def parse_predict_response(response) -> Arrays:
  """{output key: numpy array} of a gRPC `PredictResponse`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}


def _json_value(array: np.ndarray) -> Any:
  """Nested lists for JSON; bytes become str, or {"b64": ...} if not UTF-8."""
  if array.dtype == object or array.dtype.kind == "S":
    def encode(value):
      if isinstance(value, bytes):
        try:
          return value.decode("utf-8")
        except UnicodeDecodeError:
          return {"b64": base64.b64encode(value).decode("ascii")}
      return value
    return np.vectorize(encode, otypes=[object])(array).tolist() \
        if array.size else array.tolist()
  return array.tolist()


def build_rest_body(inputs: Mapping[str, Any],
                    signature_name: str) -> Dict[str, Any]:
  """TF Serving REST body, columnar ("inputs") format.

  Bytes that are not UTF-8 (serialized tf.Examples) are sent as {"b64": ...},
  as TF Serving's REST API expects.

  Example: {"input_ids": int32 [[2, 3]]} -> {"signature_name": "serving_default",
      "inputs": {"input_ids": [[2, 3]]}}
  """
  body = {"signature_name": signature_name, "inputs": {}}
  for key, value in inputs.items():
    array = np.asarray(value)
    if array.dtype == object and key == schema.EXAMPLES_INPUT_KEY:
      body["inputs"][key] = [{"b64": base64.b64encode(v).decode("ascii")}
                             for v in array.tolist()]
    else:
      body["inputs"][key] = _json_value(array)
  return body


def parse_rest_outputs(response_body: Mapping[str, Any]) -> Arrays:
  """{output key: numpy array} of a REST predict answer (columnar format).

  Strings come back as str; they become bytes, as over gRPC.

  Example: {"outputs": {"tags": [["O"]], "scores": [[0.5]]}} ->
  {"tags": object [[b"O"]], "scores": float [[0.5]]}.
  """
  outputs = response_body.get("outputs")
  if outputs is None:
    raise PredictionError("INTERNAL", "REST answer has no 'outputs': "
                          f"{str(response_body)[:200]}")
  if not isinstance(outputs, dict):
    raise PredictionError("INTERNAL", "REST answer has one unnamed output; "
                          "expected named outputs")
  parsed = {}
  for key, value in outputs.items():
    array = np.array(value)
    if array.dtype.kind == "U":
      array = np.vectorize(lambda s: s.encode("utf-8"),
                           otypes=[object])(array)
    parsed[key] = array
  return parsed


# --- Transports -----------------------------------------------------------------


def with_retries(call: Callable[[], _Result], max_retries: int,
                 backoff_s: float,
                 is_retryable: Callable[[PredictionError], bool]) -> _Result:
  """Runs `call()`; retries up to `max_retries` times with exponential backoff.

  Example: a call failing UNAVAILABLE twice, then answering, with backoff
  0.1 s -> its answer after sleeps of 0.1 s and 0.2 s.
  """
  attempt = 0
  while True:
    try:
      return call()
    except PredictionError as error:
      if attempt >= max_retries or not is_retryable(error):
        raise
      time.sleep(backoff_s * (2 ** attempt))
      attempt += 1


def _is_unavailable(error: PredictionError) -> bool:
  return error.code == "UNAVAILABLE"


class GrpcTransport:
  """TF Serving's gRPC PredictionService (one channel, reused)."""

  def __init__(self, target: str, model_name: str, timeout_s: float,
               max_retries: int, backoff_s: float,
               version: Optional[int] = None):
    import grpc  # pylint: disable=g-import-not-at-top
    from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top
    self._grpc = grpc
    # gRPC's default 4 MiB message limit is too small for large batches.
    self._channel = grpc.insecure_channel(target, options=[
        ("grpc.max_send_message_length", schema.MAX_GRPC_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", schema.MAX_GRPC_MESSAGE_BYTES)])
    self._stub = prediction_service_pb2_grpc.PredictionServiceStub(
        self._channel)
    self._model_name = model_name
    self._version = version
    self._timeout_s = timeout_s
    self._max_retries = max_retries
    self._backoff_s = backoff_s

  def predict(self, signature_name: str,
              inputs: Mapping[str, np.ndarray]) -> Arrays:
    """One Predict RPC with a `timeout_s` deadline; retries on UNAVAILABLE."""
    request = build_predict_request(inputs, self._model_name, signature_name,
                                    self._version)

    def call():
      try:
        return self._stub.Predict(request, timeout=self._timeout_s)
      except self._grpc.RpcError as error:
        raise PredictionError(error.code().name, error.details()) from None

    response = with_retries(call, self._max_retries, self._backoff_s,
                            _is_unavailable)
    return parse_predict_response(response)

  def close(self) -> None:
    self._channel.close()


_HTTP_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED",
               413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED",
               501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
               504: "DEADLINE_EXCEEDED"}


def rest_predict_url(target: str, model_name: str,
                     version: Optional[int] = None) -> str:
  """TF Serving's REST predict URL.

  Example: ("localhost:8501", "ner", 3) ->
  "http://localhost:8501/v1/models/ner/versions/3:predict".
  """
  base = target if "://" in target else f"http://{target}"
  path = f"/v1/models/{model_name}"
  if version is not None:
    path += f"/versions/{int(version)}"
  return f"{base.rstrip('/')}{path}:predict"


class RestTransport:
  """TF Serving's REST predict endpoint over urllib (no extra dependency)."""

  def __init__(self, target: str, model_name: str, timeout_s: float,
               max_retries: int, backoff_s: float,
               version: Optional[int] = None):
    self.url = rest_predict_url(target, model_name, version)
    self._timeout_s = timeout_s
    self._max_retries = max_retries
    self._backoff_s = backoff_s

  def _post(self, data: bytes) -> Dict[str, Any]:
    """One POST; every failure becomes a `PredictionError`."""
    request = urllib.request.Request(
        self.url, data=data, headers={"Content-Type": "application/json"})
    try:
      with urllib.request.urlopen(request, timeout=self._timeout_s) as reply:
        return json.loads(reply.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
      try:
        message = json.loads(error.read().decode("utf-8")).get("error", "")
      except ValueError:
        message = error.reason
      raise PredictionError(_HTTP_CODES.get(error.code, "UNKNOWN"),
                            message) from None
    except (urllib.error.URLError, ConnectionError) as error:
      reason = getattr(error, "reason", error)
      if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        raise PredictionError("DEADLINE_EXCEEDED", str(reason)) from None
      raise PredictionError("UNAVAILABLE", str(reason)) from None
    except TimeoutError as error:
      raise PredictionError("DEADLINE_EXCEEDED", str(error)) from None

  def predict(self, signature_name: str,
              inputs: Mapping[str, np.ndarray]) -> Arrays:
    """One POST with a `timeout_s` timeout; retries on 503 / refused."""
    data = json.dumps(build_rest_body(inputs, signature_name)).encode("utf-8")
    body = with_retries(lambda: self._post(data), self._max_retries,
                        self._backoff_s, _is_unavailable)
    return parse_rest_outputs(body)

  def close(self) -> None:
    pass


class SavedModelTransport:
  """Calls an export's signatures in this process (no RPC).

  Args:
    export_dir: an export base (its highest version is loaded) or a version.
    thread_mode: "throughput" (default; TensorFlow's thread pools, for
      batches) or "latency" (for single sentences); see `thread_settings`.
    mixed_precision: None, or "bfloat16" (the session's rewrite).
    intra_op_threads: threads of each op, overriding the thread mode's
      (0: all cores), e.g. 1 in each of several worker processes.
  """

  def __init__(self, export_dir: str,
               thread_mode: str = saved_model_session.THROUGHPUT,
               mixed_precision: Optional[str] = None,
               intra_op_threads: Optional[int] = None):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self._op_error = tf.errors.OpError
    # Canonical error code -> its gRPC status name (3 -> "INVALID_ARGUMENT").
    self._code_names = {value: name for name, value in vars(tf.errors).items()
                        if name.isupper() and isinstance(value, int)}
    self.thread_mode = thread_mode
    intra, inter = saved_model_session.thread_settings(thread_mode)
    if intra_op_threads is not None:
      intra = intra_op_threads
    self._model = saved_model_session.SessionSavedModel(
        export_versions.latest_version_dir(export_dir), intra, inter,
        mixed_precision)

  def predict(self, signature_name: str,
              inputs: Mapping[str, np.ndarray]) -> Arrays:
    """Runs one signature; failures become `PredictionError`s."""
    signature = self._model.signature_defs.get(signature_name)
    if signature is None:
      raise PredictionError(
          "INVALID_ARGUMENT", f"Serving signature name: {signature_name!r} "
          f"not found; the export has {sorted(self._model.signature_defs)}.")
    unknown = sorted(set(inputs) - set(signature.inputs))
    if unknown:
      raise PredictionError("INVALID_ARGUMENT", f"Signature "
                            f"{signature_name} takes inputs "
                            f"{sorted(signature.inputs)}, not {unknown}.")
    try:
      return self._model.run(signature_name, inputs)
    except self._op_error as error:
      raise PredictionError(self._code_names.get(error.error_code, "UNKNOWN"),
                            error.message) from None

  def close(self) -> None:
    self._model.close()


def check_protocol(protocol: str) -> None:
  """Raises ValueError unless `protocol` is one of `PROTOCOLS`."""
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol={protocol!r}; use one of {PROTOCOLS}.")


def make_transport(protocol: str, target: str, model_name: str,
                   timeout_s: float, max_retries: int, backoff_s: float,
                   version: Optional[int] = None):
  """`GrpcTransport` for "grpc", `RestTransport` for "rest"."""
  check_protocol(protocol)
  transport_class = GrpcTransport if protocol == GRPC else RestTransport
  return transport_class(target, model_name, timeout_s, max_retries,
                         backoff_s, version)
