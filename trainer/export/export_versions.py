"""Numbered version folders of an export base: the one rule for finding them.

The exporter (`trainer.export.exporter`), the client (`serving.client.client`)
and the development server (`serving.server.local_server`) all read an export
base the way TF Serving does::

    <export_dir>/1/saved_model.pb
    <export_dir>/3/saved_model.pb
    <export_dir>/.tmp-export-1f2e.../      being written: not a version
    <export_dir>/notes.txt                 not a version

A *version* is a folder whose name is a non-negative integer and which holds a
`saved_model.pb`; the newest is the highest number. The exporter writes a
version under `STAGING_PREFIX` + a random name and renames it into place; a
staging folder left by a killed export is never a version, and the next export
removes it once it is `STALE_STAGING_SECONDS` old (`remove_stale_staging`).
Pure Python: the file system calls go through `files`, any object with
`listdir`, `isdir` and `exists` (and `stat`, `rmtree` for the clean-up;
default: the local one through `os`; the exporter passes `tf.io.gfile` so that
gs:// bases work), so the client imports no TensorFlow to find an export.
"""

import os
import re
import shutil
import time
from typing import Iterable, List, Optional, Protocol
import types

SAVED_MODEL_FILENAME = "saved_model.pb"
# Hidden, non-numeric prefix: TF Serving ignores these folders while they are
# written.
STAGING_PREFIX = ".tmp-export-"
# A staging folder untouched this long was left by a killed export (a running
# export renames its folder within minutes).
STALE_STAGING_SECONDS = 3600.0
# gfile lists folders of object stores (gs://) with a trailing "/".
_VERSION_NAME = re.compile(r"(\d+)/?")


class FileSystem(Protocol):
  """The three calls this module makes (`tf.io.gfile` has them too)."""

  def listdir(self, path: str) -> List[str]: ...

  def isdir(self, path: str) -> bool: ...

  def exists(self, path: str) -> bool: ...


def _local_stat(path: str) -> types.SimpleNamespace:
  """`os.stat` with the field name `tf.io.gfile.stat` uses."""
  return types.SimpleNamespace(mtime_nsec=os.stat(path).st_mtime_ns)


class LocalFiles:
  """`FileSystem` over the local disk (`os`), the default."""

  listdir = staticmethod(os.listdir)
  isdir = staticmethod(os.path.isdir)
  exists = staticmethod(os.path.exists)
  stat = staticmethod(_local_stat)
  rmtree = staticmethod(shutil.rmtree)


LOCAL_FILES = LocalFiles()


def version_numbers(names: Iterable[str]) -> List[int]:
  """The integer names among folder entries, ascending.

  Example: ["3", "1/", ".tmp-export-ab12", "7a", "notes.txt"] -> [1, 3].
  """
  numbers = []
  for name in names:
    match = _VERSION_NAME.fullmatch(name)
    if match:
      numbers.append(int(match.group(1)))
  return sorted(numbers)


def _entries(export_dir: str, files: FileSystem) -> List[str]:
  return files.listdir(export_dir) if files.isdir(export_dir) else []


def list_versions(export_dir: str,
                  files: FileSystem = LOCAL_FILES) -> List[int]:
  """Versions (integer folders holding a saved_model.pb) of a base, ascending.

  Args:
    export_dir: export base folder; missing means no versions.
    files: the file system (see the module docstring).

  Returns:
    list of int, ascending.

  Example: a base holding 1/saved_model.pb, 3/saved_model.pb, an empty 4/, a
  file 5 and .tmp-export-ab12/ -> [1, 3].
  """
  return [number for number in version_numbers(_entries(export_dir, files))
          if files.exists(os.path.join(export_dir, str(number),
                                       SAVED_MODEL_FILENAME))]


def latest_version_dir(export_dir: str,
                       files: FileSystem = LOCAL_FILES) -> str:
  """`export_dir` itself when it holds a SavedModel, else its highest version.

  Raises:
    ValueError: when it is neither a version nor a base holding one.

  Example: "out/export" with versions 1 and 3 -> "out/export/3";
  "out/export/1" -> "out/export/1".
  """
  if files.exists(os.path.join(export_dir, SAVED_MODEL_FILENAME)):
    return export_dir
  versions = list_versions(export_dir, files)
  if not versions:
    raise ValueError(f"{export_dir} holds no saved_model.pb and no numbered "
                     "version folder; pass the --export_dir that run_ner.py "
                     "--do_export wrote.")
  return os.path.join(export_dir, str(versions[-1]))


def next_version(export_dir: str, files: FileSystem = LOCAL_FILES) -> int:
  """1 + the highest integer name in `export_dir` (1 when none).

  Every integer name counts as taken, complete version or not (an empty or
  half-copied folder, even a file), so a new version never lands on it.

  Example: a base holding 1/, 3/ (empty), a file 5 and .tmp-export-ab12/ -> 6.
  """
  return max(version_numbers(_entries(export_dir, files)), default=0) + 1


def remove_stale_staging(export_dir: str, files=LOCAL_FILES,
                         max_age_s: float = STALE_STAGING_SECONDS,
                         now: Optional[float] = None) -> List[str]:
  """Removes `STAGING_PREFIX` folders older than `max_age_s`; returns them.

  A younger staging folder may belong to an export still running, so it is
  left alone; anything else in the base is never touched.

  Args:
    export_dir: export base folder (missing: nothing to do).
    files: `FileSystem` that also has `stat(path).mtime_nsec` and `rmtree`.
    max_age_s: minimum age, seconds since the folder was last modified.
    now: the current time in seconds (default `time.time()`).

  Example: a base holding 1/, .tmp-export-a/ (2 hours old) and
  .tmp-export-b/ (a minute old) -> removes and returns [".../.tmp-export-a"].
  """
  now = time.time() if now is None else now
  removed = []
  for entry in _entries(export_dir, files):
    name = entry.rstrip("/")
    path = os.path.join(export_dir, name)
    if not name.startswith(STAGING_PREFIX) or not files.isdir(path):
      continue
    if now - files.stat(path).mtime_nsec / 1e9 > max_age_s:
      files.rmtree(path)
      removed.append(path)
  return removed
