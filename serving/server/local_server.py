"""A development stand-in for TensorFlow Serving (tests, laptops without it).

Production serving is the `tensorflow/serving` image (see `docker-compose.yml`);
this server answers the same requests for the same export folder so the client
and tests run where TF Serving is not installed:

  gRPC  tensorflow.serving.PredictionService/Predict, /GetModelMetadata
        tensorflow.serving.ModelService/GetModelStatus     (`grpc_service`)
  REST  GET  /v1/models/<name>[/versions/<v>]            model status
        GET  /v1/models/<name>[/versions/<v>]/metadata   signature defs
        POST /v1/models/<name>[/versions/<v>]:predict    "instances" (row) or
                                                          "inputs" (columnar)
                                                          (`rest_api`)

It serves the highest version under `--model_base_path` (loaded with
`tf.saved_model.load`, warmed up with `assets.extra/tf_serving_warmup_requests`)
and switches to a newer version when one appears, without restarting
(`model_manager`); when the served version's folder is deleted it serves the
highest remaining one. Bad requests (unknown model, version or signature,
missing or extra input, wrong dtype, a value the dtype cannot hold, ids
outside the vocab, mismatched shapes, empty batch, too long) get
INVALID_ARGUMENT or NOT_FOUND over gRPC and HTTP 400/404 with
{"error": "..."} over REST, naming the input and the value, and the server
keeps serving; unexpected errors answer INTERNAL / 500 with a request id
(the detail is in the log). Requests over --max_request_bytes are refused
unread (HTTP 413, gRPC RESOURCE_EXHAUSTED); requests over --max_batch_rows
rows, the model's positions per row, or a full batch's elements are refused
from their declared shapes before anything is allocated
(`request_bounds`). REST connections silent for --rest_read_timeout_seconds
or whose request is not whole within --rest_request_timeout_seconds are
closed (408), at most --rest_max_connections are served at once and
--rest_max_connections_per_client from one address (more get 503), and a
Host header not naming this server (--rest_allowed_hosts) gets 403. It runs
one model, with no batching, TLS or auth, and binds 127.0.0.1 unless told
otherwise: do not expose it.

Each version runs in a Session of its own with --thread_mode's threads:
"latency" (default: one intra-op and one inter-op thread, each request's
ops in its own thread) or "throughput" (TensorFlow's defaults, for batches);
--tensorflow_intra_op_parallelism and --tensorflow_inter_op_parallelism
(TF Serving's names) set them one by one.

    python -m serving.local_server --model_name=ner \
        --model_base_path=output/export --port=8500 --rest_api_port=8501
"""

import argparse
import logging
import signal
import sys
import threading
from typing import Optional, Sequence

import tensorflow as tf

from serving.server import grpc_service
from serving.server import model_manager
from serving.server import request_bounds
from serving.server import rest_api
from serving.server import rest_guards
from trainer import cpu_features
from trainer import schema
from serving.server import saved_model_session

_LOG = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_POLL_SECONDS = model_manager.DEFAULT_POLL_SECONDS
# Single requests are what the development server mostly answers.
DEFAULT_THREAD_MODE = saved_model_session.LATENCY
DEFAULT_THREADS = saved_model_session.thread_settings(DEFAULT_THREAD_MODE)


class LocalModelServer:
  """gRPC and REST servers over one `model_manager.ModelManager`.

  Port 0 picks a free port; the bound ports are `grpc_port` and `rest_port`
  after `start()`. `rest_api_port=None` runs no REST server. The limits are
  `rest_api.start_rest_server`'s and `grpc_service.start_grpc_server`'s.
  `intra_op_threads`/`inter_op_threads` are the model Session's (default:
  the "latency" thread mode, 1 and 1; see `saved_model_session`). `mount`
  adds pages beside the REST API (`python -m serving.local_server` mounts the
  demo page, `serving.demo.endpoint`); None serves TF Serving's API alone.
  `mixed_precision="bfloat16"` runs every served version in bfloat16
  (`saved_model_session.session_config`), as TF Serving's --mixed_precision.
  """

  def __init__(
      self, model_name: str, model_base_path: str, port: int = 0,
      rest_api_port: Optional[int] = 0, host: str = DEFAULT_HOST,
      poll_seconds: float = DEFAULT_POLL_SECONDS, max_workers: int = 8,
      max_request_bytes: int = model_manager.DEFAULT_MAX_REQUEST_BYTES,
      rest_read_timeout_s: float = rest_api.DEFAULT_READ_TIMEOUT_S,
      rest_max_connections: int = rest_api.DEFAULT_MAX_CONNECTIONS,
      max_batch_rows: int = request_bounds.DEFAULT_MAX_BATCH_ROWS,
      rest_request_timeout_s: float = rest_guards.DEFAULT_REQUEST_TIMEOUT_S,
      rest_max_connections_per_client: int = (
          rest_guards.DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
      rest_allowed_hosts: Sequence[str] = (),
      intra_op_threads: int = DEFAULT_THREADS[0],
      inter_op_threads: int = DEFAULT_THREADS[1],
      mount: Optional[rest_api.PageMount] = None,
      mixed_precision: Optional[str] = None):
    self.host = host
    self._mount = mount
    self.manager = model_manager.ModelManager(
        model_name, model_base_path, poll_seconds, intra_op_threads,
        inter_op_threads, mixed_precision, max_batch_rows)
    self._port = port
    self._rest_api_port = rest_api_port
    self._max_workers = max_workers
    self._max_request_bytes = max_request_bytes
    self._rest_read_timeout_s = rest_read_timeout_s
    self._rest_max_connections = rest_max_connections
    self._rest_front = dict(
        request_timeout_s=rest_request_timeout_s,
        max_connections_per_client=rest_max_connections_per_client,
        allowed_hosts=tuple(rest_allowed_hosts))
    self._grpc_server = None
    self._http_server = None
    self._http_thread = None
    self.grpc_port = None
    self.rest_port = None

  def start(self) -> "LocalModelServer":
    """Loads the latest version (if any), starts serving and polling."""
    if self.manager.load_latest() is None:
      _LOG.warning("No version under %s yet; waiting for one.",
                   self.manager.model_base_path)
    self._grpc_server, self.grpc_port = grpc_service.start_grpc_server(
        self.manager, self.host, self._port, self._max_workers,
        self._max_request_bytes)
    if self._rest_api_port is not None:
      self._http_server, self._http_thread = rest_api.start_rest_server(
          self.manager, self.host, self._rest_api_port,
          self._rest_read_timeout_s, self._rest_max_connections,
          self._max_request_bytes, self._mount, **self._rest_front)
      self.rest_port = self._http_server.server_address[1]
    self.manager.start_polling()
    _LOG.info("Serving %s on gRPC %s:%d, REST %s, in %s",
              self.manager.model_name, self.host, self.grpc_port,
              f"{self.host}:{self.rest_port}" if self.rest_port else "off",
              self.manager.mixed_precision or "float32")
    return self

  def stop(self) -> None:
    self.manager.stop()
    if self._http_server:
      self._http_server.shutdown()
      self._http_server.server_close()
      self._http_thread.join(timeout=10)
    if self._grpc_server:
      self._grpc_server.stop(grace=1).wait(timeout=10)

  def __enter__(self) -> "LocalModelServer":
    return self.start()

  def __exit__(self, *unused) -> None:
    self.stop()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
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
  # Limits (this server's own)
  parser.add_argument("--max_request_bytes", type=int,
                      default=model_manager.DEFAULT_MAX_REQUEST_BYTES,
                      help="largest REST body or gRPC message, in bytes (> 0); "
                           "larger ones get 413 / RESOURCE_EXHAUSTED unread.")
  parser.add_argument("--rest_read_timeout_seconds", type=float,
                      default=rest_api.DEFAULT_READ_TIMEOUT_S,
                      help="seconds a REST connection may stay silent (> 0); "
                           "a body that stalls longer gets 408.")
  parser.add_argument("--rest_max_connections", type=int,
                      default=rest_api.DEFAULT_MAX_CONNECTIONS,
                      help="REST connections served at once (> 0); more get "
                           "503 at once.")
  parser.add_argument("--rest_max_connections_per_client", type=int,
                      default=rest_guards.DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
                      help="REST connections one client address may hold "
                           "open (> 0); more get 503 at once, so one client "
                           "cannot take them all.")
  parser.add_argument("--rest_request_timeout_seconds", type=float,
                      default=rest_guards.DEFAULT_REQUEST_TIMEOUT_S,
                      help="seconds a REST request (line, headers and body) "
                           "may take to arrive in all (> 0), however it "
                           "trickles; later: 408 and closed.")
  parser.add_argument("--rest_allowed_hosts", default="",
                      help="comma-separated host names the REST Host header "
                           "may carry besides --host and localhost (e.g. the "
                           "name of a proxy in front); others get 403.")
  parser.add_argument("--max_batch_rows", type=int,
                      default=request_bounds.DEFAULT_MAX_BATCH_ROWS,
                      help="rows (windows, texts, examples) one request may "
                           "hold (> 0); more get INVALID_ARGUMENT / 400 "
                           "before anything is allocated. With the model's "
                           "max_position_embeddings it bounds the elements "
                           "of every input tensor.")
  # Threads (TF Serving's flag names; --thread_mode sets both)
  parser.add_argument("--thread_mode", choices=saved_model_session.THREAD_MODES,
                      default=DEFAULT_THREAD_MODE,
                      help="latency: 1 intra-op and 1 inter-op thread, each "
                           "request's ops run in its own thread (lowest "
                           "single-sentence latency); throughput: "
                           "TensorFlow's defaults (every core, for batches).")
  parser.add_argument("--tensorflow_intra_op_parallelism", type=int,
                      help="threads one op may use (0 = every core); "
                           "default from --thread_mode.")
  parser.add_argument("--tensorflow_inter_op_parallelism", type=int,
                      help="ops run at once (0 = every core; 1 runs each "
                           "request's ops in its own thread); default from "
                           "--thread_mode.")
  parser.add_argument("--mixed_precision", default="",
                      choices=("",) + saved_model_session.MIXED_PRECISION_MODES,
                      help="TF Serving's flag: 'bfloat16' runs every served "
                           "session's matmuls in bfloat16 (oneDNN's "
                           "auto-mixed-precision rewrite; the export stays "
                           "float32). Needs a CPU with AVX512_BF16 or AMX; "
                           "default: float32.")
  args = parser.parse_args(argv)
  if args.mixed_precision == saved_model_session.BFLOAT16:
    unsupported = cpu_features.bf16_support_error(
        flag_name="--mixed_precision=bfloat16")
    if unsupported:
      parser.error(unsupported)
  for flag in ("file_system_poll_wait_seconds", "max_request_bytes",
               "rest_read_timeout_seconds", "rest_max_connections",
               "rest_max_connections_per_client",
               "rest_request_timeout_seconds", "max_batch_rows"):
    if getattr(args, flag) <= 0:
      parser.error(f"--{flag} must be > 0, not {getattr(args, flag)}")
  mode_threads = saved_model_session.thread_settings(args.thread_mode)
  for index, flag in enumerate(("tensorflow_intra_op_parallelism",
                                "tensorflow_inter_op_parallelism")):
    if getattr(args, flag) is None:
      setattr(args, flag, mode_threads[index])
    elif getattr(args, flag) < 0:
      parser.error(f"--{flag} must be >= 0, not {getattr(args, flag)}")
  return args


def main(argv: Optional[Sequence[str]] = None,
         mount: Optional[rest_api.PageMount] = None) -> int:
  """Serves until SIGINT/SIGTERM; `mount` adds pages (the command: the demo)."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  logging.basicConfig(level=logging.INFO,
                      format="%(asctime)s %(levelname)s %(message)s")
  # Before TensorFlow starts: the process's own kernel pool (eager work such
  # as reading warm-up requests) gets the size each model's Session gets in
  # its own pool (`saved_model_session`).
  tf.config.threading.set_intra_op_parallelism_threads(
      args.tensorflow_intra_op_parallelism)
  server = LocalModelServer(
      args.model_name, args.model_base_path, args.port,
      None if args.rest_api_port < 0 else args.rest_api_port, args.host,
      args.file_system_poll_wait_seconds,
      max_request_bytes=args.max_request_bytes,
      rest_read_timeout_s=args.rest_read_timeout_seconds,
      rest_max_connections=args.rest_max_connections,
      max_batch_rows=args.max_batch_rows,
      rest_request_timeout_s=args.rest_request_timeout_seconds,
      rest_max_connections_per_client=args.rest_max_connections_per_client,
      rest_allowed_hosts=[name.strip() for name in
                          args.rest_allowed_hosts.split(",") if name.strip()],
      intra_op_threads=args.tensorflow_intra_op_parallelism,
      inter_op_threads=args.tensorflow_inter_op_parallelism,
      mount=mount, mixed_precision=args.mixed_precision or None).start()
  stopped = threading.Event()
  for signal_number in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signal_number, lambda *unused: stopped.set())
  stopped.wait()
  server.stop()
  return 0

