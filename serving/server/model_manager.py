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
`serving.server.rest_api` turn them into gRPC aborts and HTTP errors.
"""

import functools
import json
import logging
import os
import re
import threading
from typing import Any, Dict, List, Mapping, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from serving.server import input_checks
from trainer.export import export_versions
from trainer import schema
from serving.server import saved_model_session

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
               mixed_precision: Optional[str] = None):
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
    arrays = {key: input_checks.to_array(key, inputs[key], spec)
              for key, spec in specs.items()}
    input_checks.check_batch(arrays)
    input_checks.check_lengths(arrays, self.limits)
    return arrays

  def predict(self, signature_name: str,
              inputs: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    """Runs a signature; returns {output key: numpy array}."""
    arrays = self.coerce_inputs(signature_name, inputs)
    try:
      return self.signatures[signature_name](**arrays)
    except tf.errors.OpError as error:
      code = _GRPC_CODE_BY_NUMBER.get(error.error_code,
                                      grpc.StatusCode.INTERNAL)
      message = _SESSION_NODE_LINE.sub("", error.message)
      raise input_checks.ServingError(
          code, input_checks.tf_error_reason(message)) from None


class ModelManager:
  """Serves the newest version under a base path; polls for changes.

  Like TF Serving's latest-version policy: a new highest version replaces the
  served one, and when the served version's folder is deleted the highest
  remaining version is served instead (none left: nothing is, and requests
  get NOT_FOUND). Versions served before are reported END by
  `version_states`.
  """

  def __init__(self, model_name: str, model_base_path: str,
               poll_seconds: float = DEFAULT_POLL_SECONDS,
               intra_op_threads: int = 0, inter_op_threads: int = 0,
               mixed_precision: Optional[str] = None):
    saved_model_session.check_mixed_precision(mixed_precision)
    self.model_name = model_name
    self.model_base_path = model_base_path
    self._poll_seconds = poll_seconds
    # Every version's Session threads (`LoadedVersion`).
    self.threads = (intra_op_threads, inter_op_threads)
    # Every version's session precision (None: float32; "bfloat16").
    self.mixed_precision = mixed_precision or None
    self._lock = threading.Lock()
    self._current = None
    self._ended = set()  # versions served before, no longer served
    self._stop = threading.Event()
    self._thread = None

  def _serve(self, loaded: Optional[LoadedVersion]) -> None:
    with self._lock:
      if self._current is not None:
        self._ended.add(self._current.version)
      if loaded is not None:
        self._ended.discard(loaded.version)
      self._current = loaded

  def load_latest(self) -> Optional[int]:
    """Serves the highest version on disk; returns the served version.

    Loads it when it differs from the served one: newer, or older because
    the served version's folder was deleted. With no version left, serves
    none.
    """
    versions = export_versions.list_versions(self.model_base_path)
    current = self._current
    if not versions:
      if current is not None:
        _LOG.warning("%s version %d was deleted and no version is left; "
                     "serving none.", self.model_name, current.version)
        self._serve(None)
      return None
    if current is None or versions[-1] != current.version:
      version = versions[-1]
      loaded = LoadedVersion(
          os.path.join(self.model_base_path, str(version)), version,
          *self.threads, self.mixed_precision)
      warmed = loaded.warm_up()
      self._serve(loaded)
      _LOG.info("Serving %s version %d from %s (%d warmup requests)%s",
                self.model_name, version, loaded.version_dir, warmed,
                "" if current is None or version > current.version else
                f"; version {current.version} was deleted")
    return self._current.version

  def version_states(self, model_name: str,
                     version: Optional[Any] = None) -> List[Tuple[int, str]]:
    """GetModelStatus: [(version, AVAILABLE or END)], served one first.

    Raises:
      input_checks.ServingError: NOT_FOUND for another model, a version never
      served, or
        no version at all.

    Example: version 2 served after 1 was -> [(2, "AVAILABLE"), (1, "END")];
    version 2 deleted then -> [(1, "AVAILABLE"), (2, "END")].
    """
    self._check_model_name(model_name)
    with self._lock:
      current, ended = self._current, sorted(self._ended, reverse=True)
    states = ([(current.version, AVAILABLE)] if current else []) + [
        (number, END) for number in ended]
    if version is not None:
      states = [state for state in states if state[0] == int(version)]
    if not states:
      raise input_checks.ServingError(
          grpc.StatusCode.NOT_FOUND,
          f"Could not find any versions of model {model_name}"
          + (f" with version {version}" if version is not None else "")
          + f" (none loaded from {self.model_base_path}).")
    return states

  def start_polling(self) -> None:
    """Checks for a newer version every `poll_seconds`, in a daemon thread."""
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

  def stop(self) -> None:
    self._stop.set()
    if self._thread:
      self._thread.join(timeout=10)

  def _check_model_name(self, model_name: str) -> None:
    if model_name != self.model_name:
      raise input_checks.ServingError(grpc.StatusCode.NOT_FOUND,
                         f"Servable not found for request: model "
                         f"{model_name!r} (this server has "
                         f"{self.model_name!r}).")

  def get(self, model_name: str,
          version: Optional[Any] = None) -> LoadedVersion:
    """The loaded version for a request, or NOT_FOUND."""
    self._check_model_name(model_name)
    with self._lock:
      current = self._current
    if current is None:
      raise input_checks.ServingError(grpc.StatusCode.NOT_FOUND,
                         f"No version of {model_name} is served (no "
                         "numbered folder with saved_model.pb in "
                         f"{self.model_base_path}).")
    if version is not None and int(version) != current.version:
      raise input_checks.ServingError(grpc.StatusCode.NOT_FOUND,
                         f"Servable not found for request: {model_name} "
                         f"version {version} (serving version "
                         f"{current.version}).")
    return current
