"""Version folders as the development server loads them, like TF Serving.

  `plain_versions`  the versions of a base: plain decimal folder names only
                    ("01" or "+1" is skipped with a warning naming it)
  `FailedLoad`      a version that failed to load: its error (reported in the
                    model status) and when it is retried
  `load_error`      a load failure as a status code and a path-free reason
  `file_stamps`     what changed on disk since the last try (retry at once)

`serving.server.model_manager` owns the policy (which version, retry backoff);
this module owns the facts about folders and failures.
"""

import dataclasses
import logging
import os
import re
from typing import List, Set, Tuple

import grpc
import tensorflow as tf

from trainer.export import export_versions

_LOG = logging.getLogger(__name__)
# tf.errors codes are the canonical gRPC codes.
_GRPC_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
# Retries of a version that failed to load: after 2 s, then twice as long
# each time up to 5 min (TF Serving retries a failed load after a fixed
# --load_retry_interval_micros, 1 min); at once when its files change.
RETRY_FIRST_S = 2.0
RETRY_MAX_S = 300.0
# Version folder names: plain decimal numbers ("1", "10"; not "01" or "+1").
_PLAIN_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclasses.dataclass
class FailedLoad:
  """A version that failed to load: its error and when to try again.

  Attributes:
    error_code: the gRPC status name of the failure (UNKNOWN, DATA_LOSS, ...).
    error_message: the reason, with the export's folder written as
      "version N" (answers to remote clients hold no filesystem paths).
    attempts: loads tried so far.
    retry_at: `time.monotonic()` of the next try.
    files: the version's file stamps at the last try (a change retries now).
  """

  error_code: str
  error_message: str
  attempts: int
  retry_at: float
  files: Tuple


def load_error(error: BaseException, version_dir: str,
               version: int) -> Tuple[str, str]:
  """(gRPC status name, path-free reason) of a failed load.

  Example: OSError("SavedModel file does not exist at: /srv/export/2/{...}")
  -> ("UNKNOWN", "OSError: SavedModel file does not exist at: version 2/{...}").
  """
  code = (_GRPC_CODE_BY_NUMBER.get(error.error_code, grpc.StatusCode.UNKNOWN)
          if isinstance(error, tf.errors.OpError) else grpc.StatusCode.UNKNOWN)
  text = (error.message if isinstance(error, tf.errors.OpError)
          else str(error)).strip().splitlines()
  reason = f"{type(error).__name__}: {text[0] if text else ''}"
  for path in (os.path.abspath(version_dir), version_dir):
    reason = reason.replace(path, f"version {version}")
  return code.name, reason[:500]


def file_stamps(version_dir: str) -> Tuple:
  """(name, size, mtime) of the files a load reads: changed files retry."""
  stamps = []
  for folder, _, names in os.walk(version_dir):
    for name in sorted(names):
      try:
        stat = os.stat(os.path.join(folder, name))
      except OSError:
        continue
      stamps.append((os.path.join(folder, name), stat.st_size,
                     stat.st_mtime_ns))
  return tuple(sorted(stamps))




def plain_versions(base: str, warned: Set[str]) -> List[int]:
  """The versions of `base`, ascending; warns once per skipped folder name.

  `export_versions.list_versions` reads "01" as 1, so "1" and "01" listed
  version 1 twice; a served version is a folder named exactly str(number).

  Args:
    base: the export base folder.
    warned: names already warned about (updated).

  Example: folders 1, 01 and 2 -> [1, 2] and a warning naming "01".
  """
  names = os.listdir(base) if os.path.isdir(base) else []
  for name in sorted(names):
    numbers = export_versions.version_numbers([name])
    if (numbers and not _PLAIN_DECIMAL.fullmatch(name.rstrip("/"))
        and name not in warned):
      warned.add(name)
      _LOG.warning(
          "Skipping folder %r in %s: version folders are plain decimal "
          "numbers (1, 2, 10), without leading zeros or signs; rename it to "
          "%d to serve it.", name, base, numbers[0])
  return sorted(set(export_versions.list_versions(base)))
