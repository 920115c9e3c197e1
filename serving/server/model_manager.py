"""The development server's model: loaded versions, status, polling.

`ModelManager` serves the highest version under a base path (the versions
`trainer.export.export_versions.list_versions` finds, as TF Serving does), loads
it into a Session with the server's thread settings (as TF Serving's
--tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism),
replays its warmup requests, switches to a newer
version when one appears and back to the highest remaining one when the
served version's folder is deleted. `LoadedVersion.predict` checks every
request against the signature (names, dtypes, ranks, batch sizes, lengths:
`serving.server.input_checks`) and raises `ServingError`s carrying the gRPC
status code that TF Serving would answer with; `serving.server.grpc_service` and
`serving.server.rest_api` turn them into gRPC aborts and HTTP errors. Sizes are
checked first, from what the request declares (`request_bounds`). A version
that fails to load is reported and retried with backoff, only plain decimal
folders are versions (`version_loading`), and a version no longer served has
its session closed once its last request ends.
"""

import functools
import json
import logging
import os
import re
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from serving.server import input_checks
from serving.server import request_bounds
from trainer.export import export_versions
from trainer import schema
from serving.server import saved_model_session
from serving.server import version_loading

_LOG = logging.getLogger(__name__)
DEFAULT_POLL_SECONDS = 1.0
# Largest request body (REST) or message (gRPC) the development server reads;
# larger ones are refused (413 / RESOURCE_EXHAUSTED) before they are parsed.
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
# GetModelStatus states (tensorflow.serving.ModelVersionStatus.State names).
AVAILABLE = "AVAILABLE"
END = "END"
# A Session's error repeats the node after the (empty) stack, "Node: 'x'",
# which eager errors do not; `input_checks.tf_error_reason` reads the rest.
_SESSION_NODE_LINE = re.compile(r"^Node: '[^'\n]*'\n", re.MULTILINE)
# tf.errors codes are the canonical gRPC codes.
_GRPC_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}




def _read_limits(version_dir: str) -> Dict[str, int]:
  """`input_checks.check_lengths`' limits, from ner_config.json ({} if none).

  Example: a version exported with max_text_chars 8192 and a BERT of 512
  positions -> {"max_text_chars": 8192, "max_position_embeddings": 512}.
  """
  path = os.path.join(version_dir, schema.ASSETS_EXTRA_DIRNAME,
                      schema.NER_CONFIG_FILENAME)
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as reader:
    config = json.load(reader)
  return {key: int(config[key])
          for key in ("max_text_chars", "max_position_embeddings")
          if config.get(key)}


class LoadedVersion:
  """One loaded SavedModel version: its signatures and their specs.

  The version runs in a Session of its own
  (`saved_model_session.SessionSavedModel`) with `intra_op_threads` /
  `inter_op_threads` (TF Serving's
  --tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism;
  0 is TensorFlow's default) and `mixed_precision` (TF Serving's
  --mixed_precision: None or "bfloat16"). `signatures` maps each signature
  name to a
  function of numpy keyword arguments returning {output key: array}.
  """

  def __init__(self, version_dir: str, version: int,
               intra_op_threads: int = 0, inter_op_threads: int = 0,
               mixed_precision: Optional[str] = None,
               max_batch_rows: int = request_bounds.DEFAULT_MAX_BATCH_ROWS):
    self.version = version
    self.version_dir = version_dir
    self.model = saved_model_session.SessionSavedModel(
        version_dir, intra_op_threads, inter_op_threads, mixed_precision)
    self.signature_defs = dict(self.model.signature_defs)
    self.signatures = {name: functools.partial(self._run, name)
                       for name in self.signature_defs}
    # {signature: {input key: TensorSpec}}, keys sorted (as tf.function's).
    self.input_specs = {
        name: {key: tf.TensorSpec(tf.TensorShape(info.tensor_shape),
                                  tf.as_dtype(info.dtype), key)
               for key, info in sorted(signature.inputs.items())}
        for name, signature in self.signature_defs.items()}
    self.limits = _read_limits(version_dir)
    self.bounds = request_bounds.bounds_for(self.limits, max_batch_rows)
    # Requests running in the session, and whether it was unloaded: the
    # session closes when the last request of a retired version ends.
    self._users_lock = threading.Lock()
    self._users = 0
    self._retired = False
    self.closed = False

  def _run(self, signature_name: str, **arrays: np.ndarray
           ) -> Dict[str, np.ndarray]:
    return self.model.run(signature_name, arrays)

  def warm_up(self) -> int:
    """Replays assets.extra/tf_serving_warmup_requests, as TF Serving does.

    Returns:
      The number of requests replayed (0 when the file is absent).
    """
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

  def coerce_inputs(self, signature_name: str,
                    inputs: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    """Checks names, dtypes, ranks, batch sizes, lengths; returns arrays.

    Args:
      signature_name: a signature of this version.
      inputs: {key: numpy array or nested lists (from JSON)}.

    Raises:
      input_checks.ServingError: INVALID_ARGUMENT naming what is wrong and what
      is allowed.
    """
    if signature_name not in self.signatures:
      raise input_checks.unknown_signature(signature_name, self.signatures)
    specs = self.input_specs[signature_name]
    missing = sorted(set(specs) - set(inputs))
    extra = sorted(set(inputs) - set(specs))
    if missing or extra:
      raise input_checks.invalid_argument(
          f"Signature {signature_name} takes inputs {sorted(specs)}; "
          f"missing {missing}, unexpected {extra}.")
    for key, spec in specs.items():
      if not isinstance(inputs[key], np.ndarray):  # JSON: count before numpy
        self.bounds.check_json_value(key, inputs[key], spec.shape.rank)
    arrays = {key: input_checks.to_array(key, inputs[key], spec)
              for key, spec in specs.items()}
    input_checks.check_batch(arrays)
    input_checks.check_lengths(arrays, self.limits)
    for key, array in arrays.items():
      self.bounds.check_declared_shape(key, array.shape, None)
    if schema.TEXT_INPUT_KEY in arrays:
      self.bounds.check_text(schema.TEXT_INPUT_KEY,
                             arrays[schema.TEXT_INPUT_KEY].reshape(-1))
    if schema.EXAMPLES_INPUT_KEY in arrays:
      self.bounds.check_examples(arrays[schema.EXAMPLES_INPUT_KEY].reshape(-1))
    return arrays

  def predict(self, signature_name: str,
              inputs: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    """Runs a signature; returns {output key: numpy array}.

    Raises:
      input_checks.ServingError: the request's fault (INVALID_ARGUMENT, ...),
        or UNAVAILABLE when this version was unloaded meanwhile.
      tf.errors.OpError: INTERNAL or UNKNOWN, the server's fault (answered
        500 with a request id, the detail only in the log).
    """
    arrays = self.coerce_inputs(signature_name, inputs)
    with self._users_lock:
      if self.closed:
        raise input_checks.ServingError(
            grpc.StatusCode.UNAVAILABLE,
            f"Version {self.version} was unloaded while the request waited; "
            "retry (the server serves a newer version).")
      self._users += 1
    try:
      return self.signatures[signature_name](**arrays)
    except tf.errors.OpError as error:
      code = _GRPC_CODE_BY_NUMBER.get(error.error_code,
                                      grpc.StatusCode.INTERNAL)
      if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        raise
      message = _SESSION_NODE_LINE.sub("", error.message)
      raise input_checks.ServingError(
          code, input_checks.tf_error_reason(message)) from None
    finally:
      self._release()

  def _release(self) -> None:
    with self._users_lock:
      self._users -= 1
      close = self._retired and not self._users and not self.closed
      self.closed = self.closed or close
    if close:
      self._close_session()

  def retire(self) -> None:
    """Unloads: closes the session now, or when its last request ends."""
    with self._users_lock:
      self._retired = True
      close = not self._users and not self.closed
      self.closed = self.closed or close
    if close:
      self._close_session()

  def _close_session(self) -> None:
    self.model.close()
    _LOG.info("Unloaded version %d (its session is closed).", self.version)


class ModelManager:
  """Serves the newest version under a base path; polls for changes.

  Like TF Serving's latest-version policy: a new highest version replaces the
  served one, and when the served version's folder is deleted the highest
  remaining version is served instead (none left: nothing is, and requests
  get NOT_FOUND). Versions served before are reported END by
  `version_states`, and their sessions are closed once their last request
  ends. A version that fails to load is reported END with its error
  (`version_errors`) while the served one stays; it is retried after
  `retry_first_s`, twice as long each time up to `retry_max_s`, or at once
  when its files change, and each attempt logs one line. Only plain decimal
  folder names are versions; a warning names any other numeric folder
  ("01", "+1") once.
  """

  def __init__(self, model_name: str, model_base_path: str,
               poll_seconds: float = DEFAULT_POLL_SECONDS,
               intra_op_threads: int = 0, inter_op_threads: int = 0,
               mixed_precision: Optional[str] = None,
               max_batch_rows: int = request_bounds.DEFAULT_MAX_BATCH_ROWS,
               retry_first_s: float = version_loading.RETRY_FIRST_S,
               retry_max_s: float = version_loading.RETRY_MAX_S):
    saved_model_session.check_mixed_precision(mixed_precision)
    self.model_name = model_name
    self.model_base_path = model_base_path
    self._poll_seconds = poll_seconds
    # Every version's Session threads (`LoadedVersion`).
    self.threads = (intra_op_threads, inter_op_threads)
    # Every version's session precision (None: float32; "bfloat16").
    self.mixed_precision = mixed_precision or None
    self.max_batch_rows = max_batch_rows
    self._retry = (retry_first_s, retry_max_s)
    self._lock = threading.Lock()
    self._current = None
    self._ended = set()  # versions served before, no longer served
    self._failed = {}  # version -> FailedLoad
    self._skipped_names = set()  # non-decimal folder names warned about
    self._stop = threading.Event()
    self._thread = None

  def _serve(self, loaded: Optional[LoadedVersion]) -> None:
    with self._lock:
      previous = self._current
      if previous is not None:
        self._ended.add(previous.version)
      if loaded is not None:
        self._ended.discard(loaded.version)
        self._failed.pop(loaded.version, None)
      self._current = loaded
    if previous is not None and previous is not loaded:
      previous.retire()

  def versions_on_disk(self) -> List[int]:
    """The base's versions, ascending (`version_loading.plain_versions`)."""
    return version_loading.plain_versions(self.model_base_path,
                                          self._skipped_names)

  def _try_load(self, version: int) -> Optional[LoadedVersion]:
    """Loads and warms a version, or records the failure and returns None."""
    version_dir = os.path.join(self.model_base_path, str(version))
    failed = self._failed.get(version)
    stamps = version_loading.file_stamps(version_dir)
    if failed and time.monotonic() < failed.retry_at and stamps == failed.files:
      return None
    try:
      loaded = LoadedVersion(version_dir, version, *self.threads,
                             self.mixed_precision, self.max_batch_rows)
      warmed = loaded.warm_up()
    except Exception as error:  # pylint: disable=broad-except
      # A half-copied or broken version must not stop serving the old one.
      attempts = failed.attempts + 1 if failed else 1
      wait_s = min(self._retry[0] * 2 ** (attempts - 1), self._retry[1])
      code, reason = version_loading.load_error(error, version_dir, version)
      with self._lock:
        self._failed[version] = version_loading.FailedLoad(
            code, reason, attempts, time.monotonic() + wait_s, stamps)
      _LOG.warning("Could not load %s version %d (attempt %d; next in %g s "
                   "or when its files change): %s", self.model_name, version,
                   attempts, wait_s, reason)
      return None
    _LOG.info("Loaded %s version %d from %s (%d warmup requests)",
              self.model_name, version, version_dir, warmed)
    return loaded

  def load_latest(self) -> Optional[int]:
    """Serves the highest version on disk; returns the served version.

    Loads it when it differs from the served one: newer, or older because
    the served version's folder was deleted. With no version left, serves
    none. A version that fails to load leaves the served one in place.
    """
    versions = self.versions_on_disk()
    current = self._current
    with self._lock:
      for version in set(self._failed) - set(versions):
        del self._failed[version]  # deleted: nothing to report or retry
    if not versions:
      if current is not None:
        _LOG.warning("%s version %d was deleted and no version is left; "
                     "serving none.", self.model_name, current.version)
        self._serve(None)
      return None
    if current is None or versions[-1] != current.version:
      loaded = self._try_load(versions[-1])
      if loaded is not None:
        self._serve(loaded)
        if current is not None and current.version > loaded.version:
          _LOG.info("Serving %s version %d; version %d was deleted",
                    self.model_name, loaded.version, current.version)
      elif current is not None and current.version not in versions:
        _LOG.warning("%s version %d was deleted and version %d does not "
                     "load; serving none.", self.model_name, current.version,
                     versions[-1])
        self._serve(None)
    return self._current.version if self._current else None

  def version_errors(self) -> Dict[int, Tuple[str, str]]:
    """{version: (error code name, message)} of versions that failed to load.

    Example: a corrupt saved_model.pb in version 2 -> {2: ("UNKNOWN",
    "DecodeError: Error parsing message")}.
    """
    with self._lock:
      return {version: (failed.error_code, failed.error_message)
              for version, failed in self._failed.items()}

  def version_states(self, model_name: str,
                     version: Optional[Any] = None) -> List[Tuple[int, str]]:
    """GetModelStatus: [(version, AVAILABLE or END)], served one first.

    Versions that failed to load are END too (`version_errors` has why).

    Raises:
      input_checks.ServingError: NOT_FOUND for another model, a version never
        served, or no version at all.

    Example: version 2 served after 1 was -> [(2, "AVAILABLE"), (1, "END")];
    version 2 deleted then -> [(1, "AVAILABLE"), (2, "END")].
    """
    self._check_model_name(model_name)
    with self._lock:
      current = self._current
      ended = sorted(self._ended | set(self._failed), reverse=True)
    states = ([(current.version, AVAILABLE)] if current else []) + [
        (number, END) for number in ended]
    if version is not None:
      states = [state for state in states if state[0] == int(version)]
    if not states:
      raise input_checks.ServingError(
          grpc.StatusCode.NOT_FOUND,
          f"Could not find any versions of model {model_name}"
          + (f" with version {version}" if version is not None else "")
          + " (none loaded).")
    return states

  def start_polling(self) -> None:
    """Checks for a newer version every `poll_seconds`, in a daemon thread."""
    def poll():
      while not self._stop.wait(self._poll_seconds):
        try:
          self.load_latest()
        except Exception:  # pylint: disable=broad-except
          # Listing the folder failed (a network disk): try again next time.
          _LOG.exception("Could not list the versions of %s",
                         self.model_name)
    self._thread = threading.Thread(target=poll, name="version-poller",
                                    daemon=True)
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread:
      self._thread.join(timeout=10)

  def _check_model_name(self, model_name: str) -> None:
    if model_name != self.model_name:
      raise input_checks.ServingError(
          grpc.StatusCode.NOT_FOUND,
          f"Servable not found for request: model {model_name!r} (this "
          f"server has {self.model_name!r}).")

  def get(self, model_name: str,
          version: Optional[Any] = None) -> LoadedVersion:
    """The loaded version for a request, or NOT_FOUND."""
    self._check_model_name(model_name)
    with self._lock:
      current = self._current
    if current is None:
      raise input_checks.ServingError(
          grpc.StatusCode.NOT_FOUND,
          f"No version of {model_name} is served (no numbered folder with "
          "saved_model.pb has loaded; the server log says why).")
    if version is not None and int(version) != current.version:
      raise input_checks.ServingError(
          grpc.StatusCode.NOT_FOUND,
          f"Servable not found for request: {model_name} version {version} "
          f"(serving version {current.version}).")
    return current
