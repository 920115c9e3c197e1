"""A development stand-in for TensorFlow Serving (tests, laptops without it).

Production serving is the `tensorflow/serving` image (see `docker-compose.yml`);
this server answers the same requests for the same export folder so the client
and tests run where TF Serving is not installed:

  gRPC  tensorflow.serving.PredictionService/Predict, /GetModelMetadata
        tensorflow.serving.ModelService/GetModelStatus
  REST  GET  /v1/models/<name>[/versions/<v>]            model status
        GET  /v1/models/<name>[/versions/<v>]/metadata   signature defs
        POST /v1/models/<name>[/versions/<v>]:predict    "instances" (row) or
                                                          "inputs" (columnar)

It serves the highest version under `--model_base_path` (loaded with
`tf.saved_model.load`, warmed up with `assets.extra/tf_serving_warmup_requests`)
and switches to a newer version when one appears, without restarting. Bad
requests (unknown model, version or signature, missing or extra input, wrong
dtype, mismatched shapes, empty batch, too long) get INVALID_ARGUMENT or
NOT_FOUND over gRPC and HTTP 400/404 with {"error": "..."} over REST, and the
server keeps serving. It runs one model, with no batching, TLS or auth, and
binds 127.0.0.1 unless told otherwise: do not expose it.

    python -m serving.local_server --model_name=ner \
        --model_base_path=output/export --port=8500 --rest_api_port=8501
"""

import argparse
import base64
from concurrent import futures
import http.server
import json
import logging
import os
import re
import signal
import sys
import threading

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from trainer import schema

_LOG = logging.getLogger("serving.local_server")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_POLL_SECONDS = 1.0
_SIGNATURE_DEF_FIELD = "signature_def"
_HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400,
                grpc.StatusCode.NOT_FOUND: 404,
                grpc.StatusCode.FAILED_PRECONDITION: 400,
                grpc.StatusCode.UNAVAILABLE: 503,
                grpc.StatusCode.UNIMPLEMENTED: 501}
# tf.errors codes are the canonical gRPC codes.
_GRPC_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
  """A request error with its gRPC status code."""

  def __init__(self, code, message):
    super().__init__(message)
    self.code = code
    self.message = message


def _invalid(message):
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def list_versions(model_base_path):
  """Integer version folders holding a saved_model.pb, ascending."""
  if not os.path.isdir(model_base_path):
    return []
  return sorted(int(name) for name in os.listdir(model_base_path)
                if re.fullmatch(r"\d+", name) and os.path.exists(
                    os.path.join(model_base_path, name, "saved_model.pb")))


class LoadedVersion:
  """One loaded SavedModel version: its signatures and their specs."""

  def __init__(self, version_dir, version):
    self.version = version
    self.version_dir = version_dir
    self.model = tf.saved_model.load(version_dir)
    self.signatures = dict(self.model.signatures)
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as reader:
      saved_model.ParseFromString(reader.read())
    self.signature_defs = dict(saved_model.meta_graphs[0].signature_def)
    # {signature: {input key: TensorSpec}}.
    self.input_specs = {
        name: function.structured_input_signature[1]
        for name, function in self.signatures.items()}

  def warm_up(self):
    """Replays assets.extra/tf_serving_warmup_requests, as TF Serving does."""
    path = os.path.join(self.version_dir, schema.ASSETS_EXTRA_DIRNAME,
                        schema.WARMUP_FILENAME)
    if not os.path.exists(path):
      return 0
    count = 0
    for record in tf.data.TFRecordDataset(path):
      log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
      request = log.predict_log.request
      self.predict(request.model_spec.signature_name or
                   schema.SERVING_DEFAULT_SIGNATURE,
                   {key: tf.make_ndarray(proto)
                    for key, proto in request.inputs.items()})
      count += 1
    return count

  def coerce_inputs(self, signature_name, inputs):
    """Checks names, dtypes, ranks and batch sizes; returns numpy arrays.

    Args:
      signature_name: a signature of this version.
      inputs: {key: numpy array or nested lists (from JSON)}.

    Raises:
      ServingError: INVALID_ARGUMENT naming what is wrong and what is allowed.
    """
    if signature_name not in self.signatures:
      raise _invalid("Serving signature key \"%s\" not found; this model has "
                     "%s." % (signature_name, ", ".join(sorted(
                         self.signatures))))
    specs = self.input_specs[signature_name]
    missing = sorted(set(specs) - set(inputs))
    extra = sorted(set(inputs) - set(specs))
    if missing or extra:
      raise _invalid("Signature %s takes inputs %s; missing %s, unexpected %s."
                     % (signature_name, sorted(specs), missing, extra))
    arrays = {}
    for key, spec in specs.items():
      arrays[key] = _to_array(key, inputs[key], spec)
    batch_sizes = {key: array.shape[0] for key, array in arrays.items()}
    if len(set(batch_sizes.values())) > 1:
      raise _invalid("Inputs have different batch sizes: %s." % batch_sizes)
    if 0 in batch_sizes.values():
      raise _invalid("Empty batch: every input has 0 rows; send at least one.")
    shapes = {key: array.shape for key, array in arrays.items()
              if array.ndim >= 2}
    if len(set(shapes.values())) > 1:
      raise _invalid("Inputs have mismatched shapes: %s; %s take arrays of "
                     "one shape [batch, seq_len]." % (
                         {k: list(v) for k, v in shapes.items()},
                         ", ".join(sorted(shapes))))
    return arrays

  def predict(self, signature_name, inputs):
    """Runs a signature; returns {output key: numpy array}."""
    arrays = self.coerce_inputs(signature_name, inputs)
    try:
      outputs = self.signatures[signature_name](
          **{key: tf.constant(value) for key, value in arrays.items()})
    except tf.errors.OpError as error:
      code = _GRPC_CODE_BY_NUMBER.get(error.error_code,
                                      grpc.StatusCode.INTERNAL)
      raise ServingError(code, error.message.split("\n")[0]) from None
    return {key: value.numpy() for key, value in outputs.items()}


def _to_array(key, value, spec):
  """Converts one input to `spec`'s dtype, refusing lossy conversions."""
  dtype = spec.dtype.as_numpy_dtype
  if isinstance(value, np.ndarray):
    array = value
    if spec.dtype == tf.string:
      if array.dtype.kind not in ("O", "S", "U"):
        raise _invalid("Input %s must be string (DT_STRING) but %s was given."
                       % (key, array.dtype))
      array = np.vectorize(_as_bytes, otypes=[object])(array) \
          if array.size else array.astype(object)
    elif array.dtype != dtype:
      raise _invalid("Input %s must be %s but %s was given."
                     % (key, spec.dtype.name, tf.as_dtype(array.dtype).name
                        if array.dtype.kind != "O" else "string"))
  else:  # JSON lists
    try:
      if spec.dtype == tf.string:
        array = np.array(_map_nested(value, _json_bytes), dtype=object)
      else:
        _check_json_numbers(key, value, spec.dtype)
        array = np.array(value, dtype=dtype)
    except (ValueError, TypeError) as error:
      raise _invalid("Input %s is not a rectangular %s array: %s"
                     % (key, spec.dtype.name, error)) from None
  if spec.shape.rank is not None and array.ndim != spec.shape.rank:
    raise _invalid("Input %s must have rank %d (shape %s) but has shape %s."
                   % (key, spec.shape.rank, spec.shape, list(array.shape)))
  for index, size in enumerate(spec.shape.as_list() if spec.shape.rank
                               else []):
    if size is not None and array.shape[index] != size:
      raise _invalid("Input %s dimension %d must be %d, not %d."
                     % (key, index, size, array.shape[index]))
  return array


def _as_bytes(value):
  return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _map_nested(value, function):
  if isinstance(value, list):
    return [_map_nested(item, function) for item in value]
  return function(value)


def _json_bytes(value):
  if isinstance(value, dict) and set(value) == {"b64"}:
    return base64.b64decode(value["b64"])
  if isinstance(value, str):
    return value.encode("utf-8")
  raise ValueError("expected a string or {\"b64\": ...}, got %r" % (value,))


def _check_json_numbers(key, value, dtype):
  if isinstance(value, list):
    for item in value:
      _check_json_numbers(key, item, dtype)
    return
  allowed = (int,) if dtype.is_integer else (int, float)
  if isinstance(value, bool) or not isinstance(value, allowed):
    raise _invalid("Input %s must be %s but holds %r." % (key, dtype.name,
                                                           value))


class ModelManager:
  """Serves the newest version under a base path; polls for new ones."""

  def __init__(self, model_name, model_base_path,
               poll_seconds=DEFAULT_POLL_SECONDS):
    self.model_name = model_name
    self.model_base_path = model_base_path
    self._poll_seconds = poll_seconds
    self._lock = threading.Lock()
    self._current = None
    self._stop = threading.Event()
    self._thread = None

  def load_latest(self):
    """Loads the highest version if it is newer; returns the served version."""
    versions = list_versions(self.model_base_path)
    current = self._current
    if versions and (current is None or versions[-1] > current.version):
      version = versions[-1]
      loaded = LoadedVersion(
          os.path.join(self.model_base_path, str(version)), version)
      warmed = loaded.warm_up()
      with self._lock:
        self._current = loaded
      _LOG.info("Serving %s version %d from %s (%d warmup requests)",
                self.model_name, version, loaded.version_dir, warmed)
    return self._current.version if self._current else None

  def start_polling(self):
    def poll():
      while not self._stop.wait(self._poll_seconds):
        try:
          self.load_latest()
        except Exception:  # pylint: disable=broad-except
          # A half-copied or broken version must not stop serving the old one.
          _LOG.exception("Could not load a new version of %s",
                         self.model_name)
    self._thread = threading.Thread(target=poll, name="version-poller",
                                    daemon=True)
    self._thread.start()

  def stop(self):
    self._stop.set()
    if self._thread:
      self._thread.join(timeout=10)

  def get(self, model_name, version=None):
    """The loaded version for a request, or NOT_FOUND."""
    if model_name != self.model_name:
      raise ServingError(grpc.StatusCode.NOT_FOUND,
                         "Servable not found for request: model %r (this "
                         "server has %r)." % (model_name, self.model_name))
    with self._lock:
      current = self._current
    if current is None:
      raise ServingError(grpc.StatusCode.NOT_FOUND,
                         "No version of %s is loaded yet (no numbered folder "
                         "with saved_model.pb in %s)."
                         % (model_name, self.model_base_path))
    if version is not None and int(version) != current.version:
      raise ServingError(grpc.StatusCode.NOT_FOUND,
                         "Servable not found for request: %s version %s "
                         "(serving version %d)." % (model_name, version,
                                                    current.version))
    return current


def _signature_def_map(loaded):
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  for name, signature_def in loaded.signature_defs.items():
    signature_map.signature_def[name].CopyFrom(signature_def)
  return signature_map


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """gRPC Predict and GetModelMetadata (Classify, Regress: UNIMPLEMENTED)."""

  def __init__(self, manager):
    self._manager = manager

  def Predict(self, request, context):  # pylint: disable=invalid-name
    try:
      version = (request.model_spec.version.value
                 if request.model_spec.HasField("version") else None)
      loaded = self._manager.get(request.model_spec.name, version)
      signature_name = (request.model_spec.signature_name
                        or schema.SERVING_DEFAULT_SIGNATURE)
      try:
        inputs = {key: tf.make_ndarray(proto)
                  for key, proto in request.inputs.items()}
      except (TypeError, ValueError) as error:
        raise _invalid("Cannot read input tensors: %s" % error) from None
      outputs = loaded.predict(signature_name, inputs)
      response = predict_pb2.PredictResponse()
      response.model_spec.name = self._manager.model_name
      response.model_spec.version.value = loaded.version
      response.model_spec.signature_name = signature_name
      for key in request.output_filter or outputs:
        if key not in outputs:
          raise _invalid("output_filter names %r; outputs are %s."
                         % (key, sorted(outputs)))
        response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
      return response
    except ServingError as error:
      context.abort(error.code, error.message)

  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    try:
      version = (request.model_spec.version.value
                 if request.model_spec.HasField("version") else None)
      loaded = self._manager.get(request.model_spec.name, version)
      fields = list(request.metadata_field)
      if fields != [_SIGNATURE_DEF_FIELD]:
        raise _invalid("metadata_field must be [%r]; got %s."
                       % (_SIGNATURE_DEF_FIELD, fields))
      response = get_model_metadata_pb2.GetModelMetadataResponse()
      response.model_spec.name = self._manager.model_name
      response.model_spec.version.value = loaded.version
      response.metadata[_SIGNATURE_DEF_FIELD].Pack(_signature_def_map(loaded))
      return response
    except ServingError as error:
      context.abort(error.code, error.message)


def _status_response(loaded):
  response = get_model_status_pb2.GetModelStatusResponse()
  status = response.model_version_status.add()
  status.version = loaded.version
  status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
  return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
  """gRPC GetModelStatus (HandleReloadConfigRequest: UNIMPLEMENTED)."""

  def __init__(self, manager):
    self._manager = manager

  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    try:
      version = (request.model_spec.version.value
                 if request.model_spec.HasField("version") else None)
      return _status_response(self._manager.get(request.model_spec.name,
                                                version))
    except ServingError as error:
      context.abort(error.code, error.message)


_REST_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?"
    r"(?P<suffix>/metadata|:predict)?$")


def _json_ready(array):
  if array.dtype == object or array.dtype.kind == "S":
    return np.vectorize(lambda value: value.decode("utf-8", "replace")
                        if isinstance(value, bytes) else value,
                        otypes=[object])(array).tolist() if array.size \
        else array.tolist()
  return array.tolist()


def rest_predict(loaded, body):
  """Answers a REST predict body; returns the JSON-ready answer dict.

  "instances": a list of rows, each {input key: value} (or a bare value when
  the signature has one input) -> {"predictions": [row, ...]}.
  "inputs": {input key: batch value} (or a bare batch value) ->
  {"outputs": {output key: batch value}}.
  """
  if not isinstance(body, dict):
    raise _invalid("The request body must be a JSON object.")
  signature_name = body.get("signature_name",
                            schema.SERVING_DEFAULT_SIGNATURE)
  if signature_name not in loaded.signatures:
    raise _invalid("Serving signature key \"%s\" not found; this model has %s."
                   % (signature_name, ", ".join(sorted(loaded.signatures))))
  input_keys = sorted(loaded.input_specs[signature_name])
  if ("instances" in body) == ("inputs" in body):
    raise _invalid("The body needs exactly one of \"instances\" (row format) "
                   "or \"inputs\" (columnar format).")
  if "instances" in body:
    rows = body["instances"]
    if not isinstance(rows, list):
      raise _invalid("\"instances\" must be a list of rows.")
    if not rows:
      raise _invalid("Empty batch: \"instances\" is an empty list.")
    if all(isinstance(row, dict) and set(row) != {"b64"} for row in rows):
      inputs = {key: [row.get(key) for row in rows]
                for key in set().union(*rows)}
    elif len(input_keys) == 1:
      inputs = {input_keys[0]: rows}
    else:
      raise _invalid("Rows must be objects {input key: value}; signature %s "
                     "has inputs %s." % (signature_name, input_keys))
    if any(value is None for values in inputs.values() for value in values):
      raise _invalid("Every row needs every input %s." % input_keys)
    outputs = loaded.predict(signature_name, inputs)
    keys = sorted(outputs)
    batch = next(iter(outputs.values())).shape[0] if outputs else 0
    values = {key: _json_ready(outputs[key]) for key in keys}
    if len(keys) == 1:
      return {"predictions": values[keys[0]]}
    return {"predictions": [{key: values[key][row] for key in keys}
                            for row in range(batch)]}
  inputs = body["inputs"]
  if not isinstance(inputs, dict) or set(inputs) == {"b64"}:
    if len(input_keys) != 1:
      raise _invalid("\"inputs\" must be an object {input key: value}; "
                     "signature %s has inputs %s." % (signature_name,
                                                      input_keys))
    inputs = {input_keys[0]: inputs}
  outputs = loaded.predict(signature_name, inputs)
  if len(outputs) == 1:
    return {"outputs": _json_ready(next(iter(outputs.values())))}
  return {"outputs": {key: _json_ready(value)
                      for key, value in outputs.items()}}


def _rest_handler(manager):
  class Handler(http.server.BaseHTTPRequestHandler):
    """TF Serving's REST API subset (see the module docstring)."""
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
      _LOG.debug("%s " + format, self.address_string(), *args)

    def _send(self, status, payload):
      data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
      self.send_response(status)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def _route(self, method):
      match = _REST_PATH.match(self.path)
      if not match:
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           "Malformed request: %s %s" % (method, self.path))
      suffix = match.group("suffix")
      if (method == "POST") != (suffix == ":predict"):
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           "Malformed request: %s %s" % (method, self.path))
      return (manager.get(match.group("name"), match.group("version")),
              suffix)

    def do_GET(self):  # pylint: disable=invalid-name
      try:
        loaded, suffix = self._route("GET")
        if suffix == "/metadata":
          self._send(200, {
              "model_spec": {"name": manager.model_name,
                             "version": str(loaded.version)},
              "metadata": {_SIGNATURE_DEF_FIELD: json_format.MessageToDict(
                  _signature_def_map(loaded),
                  preserving_proto_field_name=True)}})
        else:
          # TF Serving's JSON for GetModelStatus.
          self._send(200, {"model_version_status": [{
              "version": str(loaded.version), "state": "AVAILABLE",
              "status": {"error_code": "OK", "error_message": ""}}]})
      except ServingError as error:
        self._send(_HTTP_STATUS.get(error.code, 500), {"error": error.message})

    def do_POST(self):  # pylint: disable=invalid-name
      try:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        loaded, _ = self._route("POST")
        try:
          body = json.loads(raw.decode("utf-8"))
        except ValueError as error:
          raise _invalid("The body is not valid JSON: %s" % error) from None
        self._send(200, rest_predict(loaded, body))
      except ServingError as error:
        self._send(_HTTP_STATUS.get(error.code, 500), {"error": error.message})
      except Exception as error:  # pylint: disable=broad-except
        _LOG.exception("REST predict failed")
        self._send(500, {"error": "internal error: %s" % error})

  return Handler


class LocalModelServer:
  """gRPC and REST servers over one `ModelManager`.

  Port 0 picks a free port; the bound ports are `grpc_port` and `rest_port`
  after `start()`. `rest_api_port=None` runs no REST server.
  """

  def __init__(self, model_name, model_base_path, port=0, rest_api_port=0,
               host=DEFAULT_HOST, poll_seconds=DEFAULT_POLL_SECONDS,
               max_workers=8):
    self.host = host
    self.manager = ModelManager(model_name, model_base_path, poll_seconds)
    self._port = port
    self._rest_api_port = rest_api_port
    self._max_workers = max_workers
    self._grpc_server = None
    self._http_server = None
    self._http_thread = None
    self.grpc_port = None
    self.rest_port = None

  def start(self):
    if self.manager.load_latest() is None:
      _LOG.warning("No version under %s yet; waiting for one.",
                   self.manager.model_base_path)
    self._grpc_server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=self._max_workers),
        options=[("grpc.max_send_message_length", 64 << 20),
                 ("grpc.max_receive_message_length", 64 << 20)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(self.manager), self._grpc_server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(self.manager), self._grpc_server)
    self.grpc_port = self._grpc_server.add_insecure_port(
        "%s:%d" % (self.host, self._port))
    if not self.grpc_port:
      raise ValueError("Cannot bind gRPC to %s:%d (--port); is it in use?"
                       % (self.host, self._port))
    self._grpc_server.start()
    if self._rest_api_port is not None:
      self._http_server = http.server.ThreadingHTTPServer(
          (self.host, self._rest_api_port), _rest_handler(self.manager))
      self._http_server.daemon_threads = True
      self.rest_port = self._http_server.server_address[1]
      self._http_thread = threading.Thread(
          target=self._http_server.serve_forever, name="rest", daemon=True)
      self._http_thread.start()
    self.manager.start_polling()
    _LOG.info("Serving %s on gRPC %s:%d, REST %s", self.manager.model_name,
              self.host, self.grpc_port,
              "%s:%d" % (self.host, self.rest_port) if self.rest_port
              else "off")
    return self

  def stop(self):
    self.manager.stop()
    if self._http_server:
      self._http_server.shutdown()
      self._http_server.server_close()
      self._http_thread.join(timeout=10)
    if self._grpc_server:
      self._grpc_server.stop(grace=1).wait(timeout=10)

  def __enter__(self):
    return self.start()

  def __exit__(self, *unused):
    self.stop()


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog="python -m serving.local_server",
      description="Development server speaking TF Serving's gRPC and REST "
                  "APIs for one exported NER model. Production: TF Serving.")
  # Required
  parser.add_argument("--model_base_path", required=True,
                      help="export folder holding numbered versions.")
  # Other (names as tensorflow_model_server's)
  parser.add_argument("--model_name", default=schema.DEFAULT_MODEL_NAME,
                      help="name clients ask for.")
  parser.add_argument("--port", type=int, default=schema.DEFAULT_GRPC_PORT,
                      help="gRPC port (0 = any free port).")
  parser.add_argument("--rest_api_port", type=int,
                      default=schema.DEFAULT_REST_PORT,
                      help="REST port (0 = any free port, -1 = no REST).")
  parser.add_argument("--host", default=DEFAULT_HOST,
                      help="address to bind; keep 127.0.0.1 unless you know "
                           "who can reach it.")
  parser.add_argument("--file_system_poll_wait_seconds", type=float,
                      default=DEFAULT_POLL_SECONDS,
                      help="seconds between checks for a new version (> 0).")
  args = parser.parse_args(argv)
  if args.file_system_poll_wait_seconds <= 0:
    parser.error("--file_system_poll_wait_seconds must be > 0")
  return args


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  logging.basicConfig(level=logging.INFO,
                      format="%(asctime)s %(levelname)s %(message)s")
  server = LocalModelServer(
      args.model_name, args.model_base_path, args.port,
      None if args.rest_api_port < 0 else args.rest_api_port, args.host,
      args.file_system_poll_wait_seconds).start()
  stopped = threading.Event()
  for signal_number in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signal_number, lambda *unused: stopped.set())
  stopped.wait()
  server.stop()
  return 0


if __name__ == "__main__":
  sys.exit(main())
