"""Finding the run's TPU before anything else, with one-line errors.

`resolve(...)` turns --tpu_name (a Cloud TPU name, `local`, or a
grpc://host:port address) into a `TPUClusterResolver` for `TPUEstimator`,
checks that the address answers and that it has TPU cores, and turns every
failure into a `UserError` within `timeout_seconds` (--tpu_timeout_seconds)
instead of TensorFlow's tracebacks or its day-long retries (TensorFlow pings
a TPU master for 5 minutes, 288 times):

    name + zone + project, no cloud-tpu-client  -> needs `pip install -e .[tpu]`
    name alone, GCE metadata server unreachable -> pass --tpu_zone/--gcp_project
    local, no TPU on this machine               -> this machine has no TPU
    grpc://127.0.0.1:<closed port>              -> nothing listens there
    an address that does not answer             -> no answer within N s
    an address without TPU devices              -> no TPU cores there

Runs at the start of a --use_tpu run (`trainer.run.train_lib.run`), before
data is read.
"""

import socket
import threading
from typing import Any, Callable, Optional
import urllib.error
import urllib.parse

import tensorflow as tf

from trainer.errors import UserError

tf1 = tf.compat.v1

CLIENT_PACKAGE = "cloud-tpu-client"
INSTALL_HINT = (f"pip install -e .[tpu] (the {CLIENT_PACKAGE} package), or "
                "pass the TPU's address as --tpu_name=grpc://IP:8470")
LOCAL = "local"


class _NoAnswer(Exception):
  """A call did not return within its time limit."""


def call_with_timeout(function: Callable[[], Any], seconds: float) -> Any:
  """`function()`'s result, or its exception; _NoAnswer after `seconds`.

  The call runs in a daemon thread: a call that never returns (a socket
  without a timeout inside a library) is left behind and does not keep the
  process alive.
  """
  outcome = {}

  def target():
    try:
      outcome["value"] = function()
    except BaseException as error:  # pylint: disable=broad-except
      outcome["error"] = error

  thread = threading.Thread(target=target, daemon=True,
                            name="tpu-resolution")
  thread.start()
  thread.join(seconds)
  if thread.is_alive():
    raise _NoAnswer()
  if "error" in outcome:
    raise outcome["error"]
  return outcome.get("value")


def _describe_name(tpu_name: str, zone: Optional[str],
                   project: Optional[str]) -> str:
  """"--tpu_name=x --tpu_zone=z --gcp_project=p" (the flags given)."""
  parts = [f"--tpu_name={tpu_name}"]
  if zone:
    parts.append(f"--tpu_zone={zone}")
  if project:
    parts.append(f"--gcp_project={project}")
  return " ".join(parts)


def _resolver(tpu_name: str, zone: Optional[str], project: Optional[str],
              timeout_seconds: float):
  """(TPUClusterResolver, master address); UserError for every failure."""
  flags = _describe_name(tpu_name, zone, project)

  def build():
    resolver = tf1.distribute.cluster_resolver.TPUClusterResolver(
        tpu_name, zone=zone, project=project)
    return resolver, resolver.master()

  try:
    return call_with_timeout(build, timeout_seconds)
  except _NoAnswer:
    raise UserError(
        f"{flags}: Google Cloud did not answer within "
        f"--tpu_timeout_seconds={timeout_seconds:g} while looking up the TPU "
        "(GCE metadata server or Cloud TPU API); check the network, or pass "
        "the TPU's address as --tpu_name=grpc://IP:8470.") from None
  except ImportError as error:
    raise UserError(f"{flags}: resolving a TPU name needs {CLIENT_PACKAGE} "
                    f"({error}): {INSTALL_HINT}.") from None
  except RuntimeError as error:
    if CLIENT_PACKAGE not in str(error):
      raise UserError(f"{flags}: cannot resolve the TPU: {error}") from None
    raise UserError(f"{flags}: resolving a TPU name needs {CLIENT_PACKAGE}, "
                    f"which is not installed: {INSTALL_HINT}.") from None
  except (urllib.error.URLError, OSError) as error:
    reason = getattr(error, "reason", error)
    if zone and project:
      where = "the Cloud TPU API"
      fix = "check the network and the TPU's name"
    else:
      where = "the GCE metadata server (for the zone and project)"
      fix = ("pass --tpu_zone and --gcp_project, run on a Google Cloud VM, "
             "or pass the TPU's address as --tpu_name=grpc://IP:8470")
    raise UserError(f"{flags}: could not reach {where}: {reason}; "
                    f"{fix}.") from None
  except Exception as error:  # pylint: disable=broad-except
    # The Cloud TPU API's own errors (no such TPU, no permission, ...).
    raise UserError(f"{flags}: cannot resolve the TPU: "
                    f"{type(error).__name__}: {error}") from None


def _check_listening(master: str, timeout_seconds: float) -> None:
  """Raises UserError when nothing accepts a connection at grpc://host:port."""
  address = urllib.parse.urlparse(master)
  if not address.hostname or not address.port:
    return
  try:
    with socket.create_connection((address.hostname, address.port),
                                  timeout=timeout_seconds):
      pass
  except socket.timeout:
    raise UserError(
        f"--tpu_name={master}: no answer within --tpu_timeout_seconds="
        f"{timeout_seconds:g}; check the TPU's address and that it is "
        "running.") from None
  except OSError as error:
    reason = error.strerror or str(error)
    raise UserError(
        f"--tpu_name={master}: nothing listens there ({reason}); check the "
        "TPU's address (Cloud TPUs answer on port 8470) and that the TPU is "
        "running.") from None


def _tpu_cores(master: str, timeout_seconds: float) -> tuple[int, list[str]]:
  """(TPU cores, device types) that `master` ('' = this machine) lists."""
  options = tf1.ConfigProto(
      operation_timeout_in_ms=int(timeout_seconds * 1000))

  def list_devices():
    with tf.Graph().as_default():
      with tf1.Session(master, config=options) as session:
        return session.list_devices()

  where = f"--tpu_name={master}" if master else f"--tpu_name={LOCAL}"
  try:
    # The session's own deadline first; the thread's a little later.
    devices = call_with_timeout(list_devices, timeout_seconds + 1)
  except (_NoAnswer, tf.errors.DeadlineExceededError):
    raise UserError(
        f"{where}: did not list its devices within --tpu_timeout_seconds="
        f"{timeout_seconds:g}; check that the address is a TPU (Cloud TPUs "
        "answer on port 8470) and that it is running.") from None
  except tf.errors.OpError as error:
    raise UserError(f"{where}: cannot list the TPU's devices: "
                    f"{error.message}") from None
  types = sorted({device.device_type for device in devices})
  return sum(device.device_type == "TPU" for device in devices), types


def resolve(tpu_name: str, zone: Optional[str], project: Optional[str],
            num_cores: int, timeout_seconds: float):
  """The TPUClusterResolver of a --use_tpu run, checked to have TPU cores.

  Args:
    tpu_name: --tpu_name: a Cloud TPU name, "local" (a TPU VM) or a
      grpc://host:port address.
    zone, project: --tpu_zone, --gcp_project (None: from GCE metadata).
    num_cores: --num_tpu_cores; the TPU must have at least this many.
    timeout_seconds: --tpu_timeout_seconds, for each network step.

  Returns:
    A `TPUClusterResolver` for `tf.compat.v1.estimator.tpu.RunConfig`.

  Raises:
    UserError: naming the flags, what failed and the fix.
  """
  resolver, master = _resolver(tpu_name, zone, project, timeout_seconds)
  if master:
    _check_listening(master, timeout_seconds)
  cores, types = _tpu_cores(master, timeout_seconds)
  if not cores:
    if master:
      raise UserError(
          f"--tpu_name={tpu_name}: {master} has no TPU cores (its devices: "
          f"{', '.join(types)}); it is a TensorFlow server but not a TPU. "
          "Check the TPU's name or address.")
    raise UserError(
        f"--tpu_name={LOCAL}: this machine has no TPU (its devices: "
        f"{', '.join(types)}). Run on a TPU VM, pass the TPU's name or "
        "grpc:// address, or drop --use_tpu.")
  if cores < num_cores:
    raise UserError(f"--num_tpu_cores={num_cores}, but --tpu_name={tpu_name} "
                    f"has {cores} TPU cores; pass --num_tpu_cores={cores}.")
  return resolver
