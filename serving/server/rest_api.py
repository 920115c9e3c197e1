"""The development server's REST API: TF Serving's JSON endpoints.

  GET  /v1/models/<name>[/versions/<v>]            model status
  GET  /v1/models/<name>[/versions/<v>]/metadata   signature defs
  POST /v1/models/<name>[/versions/<v>]:predict    "instances" (row) or
                                                    "inputs" (columnar)

and, when a `PageMount` is mounted (`python -m serving.local_server` mounts the
demo, `serving.demo.endpoint`):

  GET  /                                           the demo page
  POST /demo/entities                              the demo's entities

Request errors (`input_checks.ServingError`) become HTTP 4xx with
{"error": "..."}, as TF Serving answers; anything unexpected is a 500 naming a
request id, whose detail is in the server log alone. The server keeps serving.

The front end protects the server from its connections (`start_rest_server`,
`rest_guards`): a body must come with a valid Content-Length no larger than
`max_request_bytes` (else 400, or 413 before the body is read); a socket
silent for `read_timeout_s`, or a request not whole within
`request_timeout_s`, is answered 408 and closed; at most `max_connections` are
handled at once and `max_connections_per_client` from one address (the next
get 503 at once; `transports.RestTransport` retries those). A Host header
naming another server gets 403 (DNS rebinding), a POST from a page of another
origin 403, a demo POST not declared application/json 415 (cross-site request
forgery).
"""

import http.server
import json
import logging
import re
import threading
import time
from typing import (Any, Dict, List, Mapping, Optional, Protocol, Sequence,
                    Tuple)

from google.protobuf import json_format
import grpc
import numpy as np

from serving.server import grpc_service
from serving.server import model_manager
from trainer import schema
from serving.server import input_checks
from serving.server import rest_guards

_LOG = logging.getLogger(__name__)
HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400,
               grpc.StatusCode.NOT_FOUND: 404,
               grpc.StatusCode.FAILED_PRECONDITION: 400,
               grpc.StatusCode.UNAVAILABLE: 503,
               grpc.StatusCode.UNIMPLEMENTED: 501,
               grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
               grpc.StatusCode.DEADLINE_EXCEEDED: 408,
               grpc.StatusCode.PERMISSION_DENIED: 403,
               grpc.StatusCode.INTERNAL: 500}
DEFAULT_READ_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 64
_DIGITS = re.compile(r"[0-9]+")
_REST_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?"
    r"(?P<suffix>/metadata|:predict)?$")


class PageMount(Protocol):
  """Pages served beside TF Serving's API (`serving.demo.endpoint` is one).

  The REST front calls it for the paths it claims and answers everything
  else itself; it never imports a mount, the server's command passes one in.
  """

  PAGE_HEADERS: Mapping[str, str]

  def is_page_path(self, path: str) -> bool:
    """True for the GET paths of the page."""

  def page_html(self, manager: model_manager.ModelManager) -> str:
    """The page for the model `manager` serves."""

  def is_entities_path(self, path: str) -> bool:
    """True for the POST paths the mount answers."""

  def entities_answer(self, manager: model_manager.ModelManager,
                      raw: bytes) -> Any:
    """The JSON-ready answer to a POST body; raises `ServingError`s."""


def _json_ready(array: np.ndarray) -> Any:
  """Nested lists for JSON; bytes become str (invalid UTF-8 replaced)."""
  if array.dtype == object or array.dtype.kind == "S":
    return np.vectorize(lambda value: value.decode("utf-8", "replace")
                        if isinstance(value, bytes) else value,
                        otypes=[object])(array).tolist() if array.size \
        else array.tolist()
  return array.tolist()


def _row_inputs(rows: Any, signature_name: str,
                input_keys: List[str]) -> Dict[str, List[Any]]:
  """{input key: batch list} from "instances" rows."""
  if not isinstance(rows, list):
    raise input_checks.invalid_argument(
        "\"instances\" must be a list of rows.")
  if not rows:
    raise input_checks.invalid_argument(
        "Empty batch: \"instances\" is an empty list.")
  if all(isinstance(row, dict) and set(row) != {"b64"} for row in rows):
    inputs = {key: [row.get(key) for row in rows]
              for key in set().union(*rows)}
  elif len(input_keys) == 1:
    inputs = {input_keys[0]: rows}
  else:
    raise input_checks.invalid_argument(
        f"Rows must be objects {{input key: value}}; signature "
        f"{signature_name} has inputs {input_keys}.")
  if any(value is None for values in inputs.values() for value in values):
    raise input_checks.invalid_argument(
        f"Every row needs every input {input_keys}.")
  return inputs


def _row_outputs(outputs: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  """{"predictions": [row, ...]}; rows are bare values for one output."""
  keys = sorted(outputs)
  batch = next(iter(outputs.values())).shape[0] if outputs else 0
  values = {key: _json_ready(outputs[key]) for key in keys}
  if len(keys) == 1:
    return {"predictions": values[keys[0]]}
  return {"predictions": [{key: values[key][row] for key in keys}
                          for row in range(batch)]}


def rest_predict(loaded: model_manager.LoadedVersion,
                 body: Any) -> Dict[str, Any]:
  """Answers a REST predict body; returns the JSON-ready answer dict.

  "instances": a list of rows, each {input key: value} (or a bare value when
  the signature has one input) -> {"predictions": [row, ...]}.
  "inputs": {input key: batch value} (or a bare batch value) ->
  {"outputs": {output key: batch value}}.

  Raises:
    input_checks.ServingError: INVALID_ARGUMENT naming what is wrong.

  Example: {"signature_name": "predict_text", "instances": ["张三"]} ->
  {"predictions": [{"label_ids": [2, 4], "lengths": 2, "scores": [...],
  "tags": ["B-PER", "I-PER"]}]}.
  """
  if not isinstance(body, dict):
    raise input_checks.invalid_argument(
        "The request body must be a JSON object.")
  signature_name = body.get("signature_name",
                            schema.SERVING_DEFAULT_SIGNATURE)
  if not isinstance(signature_name, str):
    raise input_checks.invalid_argument(
        f"\"signature_name\" must be a string, not {json.dumps(signature_name)}"
        f"; this model has {', '.join(sorted(loaded.signatures))}.")
  if signature_name not in loaded.signatures:
    raise input_checks.unknown_signature(signature_name, loaded.signatures)
  input_keys = sorted(loaded.input_specs[signature_name])
  if ("instances" in body) == ("inputs" in body):
    raise input_checks.invalid_argument(
        "The body needs exactly one of \"instances\" (row format) or "
        "\"inputs\" (columnar format).")
  if "instances" in body:
    if isinstance(body["instances"], list):  # before any row is read
      loaded.bounds.check_rows("instances", len(body["instances"]))
    inputs = _row_inputs(body["instances"], signature_name, input_keys)
    return _row_outputs(loaded.predict(signature_name, inputs))
  inputs = body["inputs"]
  if not isinstance(inputs, dict) or set(inputs) == {"b64"}:
    if len(input_keys) != 1:
      raise input_checks.invalid_argument(
          "\"inputs\" must be an object {input key: value}; signature "
          f"{signature_name} has inputs {input_keys}.")
    inputs = {input_keys[0]: inputs}
  outputs = loaded.predict(signature_name, inputs)
  if len(outputs) == 1:
    return {"outputs": _json_ready(next(iter(outputs.values())))}
  return {"outputs": {key: _json_ready(value)
                      for key, value in outputs.items()}}


def status_json(states: List[Tuple[int, str]],
                errors: Optional[Mapping[int, Tuple[str, str]]] = None
                ) -> Dict[str, Any]:
  """TF Serving's JSON for GetModelStatus (`ModelManager.version_states`).

  `errors` ({version: (code name, message)}, `ModelManager.version_errors`)
  fills the status of versions that failed to load.

  Example: [(2, "AVAILABLE"), (1, "END")] -> {"model_version_status":
  [{"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK",
  "error_message": ""}}, {"version": "1", "state": "END", ...}]}.
  """
  errors = errors or {}
  return {"model_version_status": [{
      "version": str(version), "state": state,
      "status": dict(zip(("error_code", "error_message"),
                         errors.get(version, ("OK", ""))))}
                                   for version, state in states]}


def body_length(headers, max_request_bytes: int) -> int:
  """The request body's length from its headers, or a ServingError.

  Raises:
    input_checks.ServingError: INVALID_ARGUMENT (400) for a Content-Length
      that is not a number or conflicts with another; UNIMPLEMENTED (501)
      for Transfer-Encoding (chunked bodies); RESOURCE_EXHAUSTED (413) over
      `max_request_bytes`.

  Example: {"Content-Length": "12"} -> 12; {} -> 0; {"Content-Length": "-1"}
  -> 400 "Content-Length must be a number of bytes, not '-1'.".
  """
  if headers.get("Transfer-Encoding"):
    raise input_checks.ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        "Transfer-Encoding is not supported; send the body with a "
        "Content-Length.")
  values = [value.strip() for value in headers.get_all("Content-Length", [])]
  if len(set(values)) > 1:
    raise input_checks.invalid_argument(
        f"Conflicting Content-Length headers: {values}.")
  if not values:
    return 0
  if not _DIGITS.fullmatch(values[0]):
    raise input_checks.invalid_argument(
        f"Content-Length must be a number of bytes, not {values[0]!r}.")
  if len(values[0]) > 18 or int(values[0]) > max_request_bytes:
    raise input_checks.ServingError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"The body has {values[0]} bytes; this server takes at most "
        f"{max_request_bytes} (--max_request_bytes). Send smaller batches.")
  return int(values[0])


def metadata_json(model_name: str,
                  loaded: model_manager.LoadedVersion) -> Dict[str, Any]:
  """TF Serving's JSON for GetModelMetadata (signature defs)."""
  return {
      "model_spec": {"name": model_name, "version": str(loaded.version)},
      "metadata": {grpc_service.SIGNATURE_DEF_FIELD: json_format.MessageToDict(
          grpc_service.signature_def_map(loaded),
          preserving_proto_field_name=True)}}


def rest_handler(
    manager: model_manager.ModelManager,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    max_request_bytes: int = model_manager.DEFAULT_MAX_REQUEST_BYTES,
    mount: Optional[PageMount] = None,
    front: Optional[rest_guards.FrontPolicy] = None):
  """A `BaseHTTPRequestHandler` class answering for `manager` (and `mount`).

  `front` holds the whole-request deadline and the Host allow-list
  (`rest_guards`); None: the defaults for a server bound to 127.0.0.1.
  """
  front = front or rest_guards.FrontPolicy()

  class Handler(http.server.BaseHTTPRequestHandler):
    """TF Serving's REST API subset (see the module docstring)."""
    protocol_version = "HTTP/1.1"
    timeout = read_timeout_s  # each socket read or write, in seconds

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
      _LOG.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, payload: Mapping[str, Any],
              close: bool = False) -> None:
      data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
      self.send_response(status)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      if close:  # the rest of this connection's bytes are not read
        self.send_header("Connection", "close")
        self.close_connection = True
      self.end_headers()
      self.wfile.write(data)

    def _send_error(self, error: input_checks.ServingError,
                    close: bool = False) -> None:
      self._send(error.http_status or HTTP_STATUS.get(error.code, 500),
                 {"error": error.message}, close)

    def _send_internal_error(self, what: str) -> None:
      """500 naming a request id; the detail goes to the log alone."""
      request_id = input_checks.new_request_id()
      _LOG.exception("REST %s %s failed (request id %s)", what,
                     self.path, request_id)
      self._send(500, {"error": input_checks.internal_error_message(
          request_id)})

    def _overdue(self) -> input_checks.ServingError:
      return input_checks.ServingError(
          grpc.StatusCode.DEADLINE_EXCEEDED,
          f"The request did not arrive within {front.request_timeout_s} s "
          "(--rest_request_timeout_seconds); send it whole, without pauses.")

    def handle_one_request(self) -> None:
      # Request line, headers and body within request_timeout_s in all.
      front.deadlines.arm(self.connection, front.request_timeout_s)
      try:
        super().handle_one_request()
      finally:
        front.deadlines.disarm(self.connection)

    def finish(self) -> None:
      front.deadlines.forget(self.connection)
      super().finish()

    def parse_request(self) -> bool:
      if front.deadlines.expired(self.connection):  # the request line stalled
        self.request_version = "HTTP/1.1"
        self._send_error(self._overdue(), close=True)
        return False
      if not super().parse_request():
        return False
      error = None
      if front.deadlines.expired(self.connection):  # the headers stalled
        error = self._overdue()
      elif self.headers.defects:  # e.g. a header line without a colon
        error = input_checks.invalid_argument(
            "Malformed request headers "
            f"({type(self.headers.defects[0]).__name__}): every header line "
            "must read 'Name: value'.")
      else:
        try:
          rest_guards.check_host(self.headers.get("Host"),
                                 front.allowed_hosts, front.bound_host)
          if self.command == "POST":
            rest_guards.check_origin(self.headers.get("Origin"),
                                     self.headers.get("Host"))
        except input_checks.ServingError as refused:
          error = refused
      if error is not None:
        self._send_error(error, close=True)
        return False
      if self.command != "POST":
        front.deadlines.disarm(self.connection)  # no body to wait for
      return True

    def handle_expect_100(self) -> bool:
      """Refuses a bad or too large body before the client sends it."""
      try:
        body_length(self.headers, max_request_bytes)
      except input_checks.ServingError as error:
        self._send_error(error, close=True)
        return False
      return super().handle_expect_100()

    def _read_body(self) -> bytes:
      """The whole body; answers and closes the connection when it can't.

      Raises:
        input_checks.ServingError: after answering (400, 408, 413, 501).
      """
      try:
        length = body_length(self.headers, max_request_bytes)
        raw = self.rfile.read(length)
        if front.deadlines.expired(self.connection):
          raise self._overdue()
        front.deadlines.disarm(self.connection)  # the model's time is not
        if len(raw) < length:                    # the client's
          raise input_checks.invalid_argument(
              f"The body ended after {len(raw)} of {length} bytes.")
        return raw
      except TimeoutError:
        error = input_checks.ServingError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"The body did not arrive: nothing was received for "
            f"{read_timeout_s} s.")
      except input_checks.ServingError as refused:
        error = refused
      try:
        self._send_error(error, close=True)
        if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
          self._discard_body()
      except OSError:  # the client is gone: nobody to answer
        self.close_connection = True
      raise error

    def _discard_body(self) -> None:
      """Reads (and drops) a refused body for up to read_timeout_s, so the
      client, still sending, reads the answer instead of a reset."""
      deadline = time.monotonic() + read_timeout_s
      try:
        while time.monotonic() < deadline and self.rfile.read1(1 << 16):
          pass
      except (OSError, ValueError):
        pass

    def _route(self, method: str) -> Tuple[model_manager.LoadedVersion, str]:
      match = _REST_PATH.match(self.path)
      suffix = match.group("suffix") if match else None
      if not match or (method == "POST") != (suffix == ":predict"):
        raise input_checks.ServingError(
            grpc.StatusCode.NOT_FOUND,
            f"Malformed request: {method} {self.path}")
      return (manager.get(match.group("name"), match.group("version")),
              suffix)

    def _send_page(self) -> None:
      data = mount.page_html(manager).encode("utf-8")
      self.send_response(200)
      for name, value in mount.PAGE_HEADERS.items():
        self.send_header(name, value)
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def do_GET(self):  # pylint: disable=invalid-name
      try:
        if mount is not None and mount.is_page_path(self.path):
          self._send_page()
          return
        match = _REST_PATH.match(self.path)
        if match and not match.group("suffix"):
          self._send(200, status_json(
              manager.version_states(match.group("name"),
                                     match.group("version")),
              manager.version_errors()))
          return
        loaded, _ = self._route("GET")
        self._send(200, metadata_json(manager.model_name, loaded))
      except input_checks.ServingError as error:
        self._send_error(error)
      except Exception:  # pylint: disable=broad-except
        self._send_internal_error("GET")

    def do_POST(self):  # pylint: disable=invalid-name
      try:
        raw = self._read_body()
      except input_checks.ServingError:
        return  # answered
      try:
        if mount is not None and mount.is_entities_path(self.path):
          # A state-changing route a browser page calls: JSON only, which a
          # cross-site form cannot send.
          rest_guards.check_json_content_type(
              self.headers.get("Content-Type"))
          self._send(200, mount.entities_answer(manager, raw))
          return
        loaded, _ = self._route("POST")
        self._send(200, rest_predict(loaded, input_checks.parse_json(raw)))
      except input_checks.ServingError as error:
        self._send_error(error)
      except Exception:  # pylint: disable=broad-except
        self._send_internal_error("POST")

  return Handler


def start_rest_server(
    manager: model_manager.ModelManager, host: str, port: int,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_request_bytes: int = model_manager.DEFAULT_MAX_REQUEST_BYTES,
    mount: Optional[PageMount] = None,
    request_timeout_s: float = rest_guards.DEFAULT_REQUEST_TIMEOUT_S,
    max_connections_per_client: int = (
        rest_guards.DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
    allowed_hosts: Sequence[str] = ()
) -> Tuple[rest_guards.BoundedHTTPServer, threading.Thread]:
  """Serves the REST API on `host:port` (0: a free port) in a daemon thread.

  Args:
    manager: the model to serve.
    host, port: where to listen.
    read_timeout_s: a connection silent this long is answered 408 (while a
      body is awaited) or closed.
    max_connections: connections handled at once; more get 503 at once.
    max_request_bytes: larger bodies get 413 before they are read.
    mount: pages served beside the API (the demo), or None.
    request_timeout_s: request line, headers and body must arrive within
      this, however they trickle (else 408 and closed).
    max_connections_per_client: connections one client address may hold
      open; more get 503 at once.
    allowed_hosts: Host header names accepted besides `host` and the
      loopback names (others get 403).

  Returns:
    (the HTTP server, whose `server_address[1]` is the bound port; the
    thread running it).
  """
  front = rest_guards.FrontPolicy(host, allowed_hosts, request_timeout_s)
  server = rest_guards.BoundedHTTPServer(
      (host, port), rest_handler(manager, read_timeout_s, max_request_bytes,
                                 mount, front),
      max_connections, max_connections_per_client, front)
  thread = threading.Thread(target=server.serve_forever, name="rest",
                            daemon=True)
  thread.start()
  return server, thread
