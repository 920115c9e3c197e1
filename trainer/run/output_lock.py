"""One writing run per --output_dir: an exclusive lock file.

Two runs writing one output folder at once lose one run's training without a
word (both checkpoints interleave; run_config.json and the exports record
only one of them). Every run that writes takes the lock first:

    with output_lock.hold(config.output_dir):   # or take=False, see below
      ...train, evaluate, predict, export...

The lock is `<output_dir>/.output_dir.lock`, holding one JSON line naming its
holder: {"host", "pid", "process_start", "started"}. On a local disk it is
also held with `fcntl.flock`, which the kernel releases when the holder dies,
so a second run is refused at once, even when both start in the same second:

    error: <output_dir> is in use by another run (host h1, pid 4242, started
    2026-12-07T13:30:00Z; lock file .../.output_dir.lock). Wait for it to
    finish, or use another --output_dir.

A lock file left by a dead process of this host (its pid is gone, or now
belongs to a process started later) is taken over with a warning. A lock
naming another host is never taken over: that host may still be writing (the
error says to delete the file once no run is active there). Output folders
on other file systems (gs://, ...) get the same record without flock: a
second run is refused while the file exists.

Multi-worker jobs: every worker runs the same command on one shared
--output_dir, so exactly one task may take the lock: the caller passes
`take=<this task is the chief>` (the chief's decision is the run's, made from
TF_CONFIG; `trainer.run.train_lib.run` passes it). With `take=False`, `hold`
does nothing, and the task must not write the folder's shared files.
"""

import contextlib
import datetime
import json
import os
import socket
from typing import Any, Iterator, Optional

from absl import logging
import tensorflow as tf

from trainer import schema
from trainer.errors import UserError

LOCK_FILENAME = schema.OUTPUT_LOCK_FILENAME

try:
  import fcntl  # pylint: disable=g-import-not-at-top
except ImportError:  # not on POSIX: the record alone (as on gs://)
  fcntl = None


def lock_path(output_dir: str) -> str:
  """`<output_dir>/.output_dir.lock`."""
  return os.path.join(output_dir, LOCK_FILENAME)


def _process_start(pid: int) -> Optional[str]:
  """The start time of `pid` in clock ticks since boot, or None if unknown.

  Field 22 of /proc/<pid>/stat; with the pid it names one process, even
  after the pid is reused.
  """
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as reader:
      stat = reader.read()
  except OSError:
    return None
  # The command name (field 2) may hold spaces: count from its ")".
  return stat.rsplit(")", 1)[1].split()[19]


def holder_record() -> dict[str, Any]:
  """This process as the lock's holder: host, pid, process start, time."""
  return {"host": socket.gethostname(), "pid": os.getpid(),
          "process_start": _process_start(os.getpid()),
          "started": datetime.datetime.now(datetime.timezone.utc).strftime(
              "%Y-%m-%dT%H:%M:%SZ")}


def holder_is_alive(record: dict[str, Any]) -> bool:
  """Whether the process a lock record names still runs (on this host).

  Example: {"pid": <a pid that exited>} -> False; {"pid": <this process>,
  "process_start": <its start>} -> True; the same pid with another
  process_start (reused by a newer process) -> False.
  """
  pid = record.get("pid")
  if not isinstance(pid, int) or pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # alive, owned by another user
  recorded, current = record.get("process_start"), _process_start(pid)
  return recorded is None or current is None or recorded == current


def _describe(record: Optional[dict[str, Any]], path: str) -> str:
  if not record:
    return f"lock file {path}"
  return (f"host {record.get('host')}, pid {record.get('pid')}, started "
          f"{record.get('started')}; lock file {path}")


def _parse(text: str) -> Optional[dict[str, Any]]:
  """The record of a lock file's text, None when empty or unreadable."""
  try:
    record = json.loads(text) if text.strip() else None
  except ValueError:
    return None
  return record if isinstance(record, dict) else None


def _in_use(output_dir: str, record: Optional[dict[str, Any]], path: str,
            other_host: bool = False) -> UserError:
  fix = ("delete the lock file if no run is active on that host any more, or "
         "use another --output_dir" if other_host else
         "wait for it to finish, or use another --output_dir")
  return UserError(f"{output_dir} is in use by another run "
                   f"({_describe(record, path)}). Two runs writing one output "
                   f"folder lose one run's work: {fix}.")


class _LocalLock:
  """flock on a lock file of a local folder, plus the holder's record."""

  def __init__(self, output_dir: str):
    self.output_dir, self.path = output_dir, lock_path(output_dir)
    self.fd: Optional[int] = None

  def acquire(self) -> None:
    """Takes the lock or raises `UserError` naming the holder."""
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        record = _parse(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        os.close(fd)
        raise _in_use(self.output_dir, record, self.path) from None
      # The holder we waited on may have deleted the file as we opened it:
      # then our lock is on an orphaned file; open the new one.
      try:
        same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
      except FileNotFoundError:
        same = False
      if same:
        break
      os.close(fd)
    self.fd = fd
    try:
      self._take_over(_parse(os.pread(fd, 4096, 0).decode("utf-8",
                                                          "replace")))
    except BaseException:
      self.release(remove=False)
      raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder_record()) + "\n").encode("utf-8"), 0)
    os.fsync(fd)

  def _take_over(self, record: Optional[dict[str, Any]]) -> None:
    """Checks a record left in the file by an earlier holder."""
    if not record:
      return
    if record.get("host") != socket.gethostname():
      raise _in_use(self.output_dir, record, self.path, other_host=True)
    if holder_is_alive(record) and record.get("pid") != os.getpid():
      # Alive but not holding the flock: its file system ignores flock.
      raise _in_use(self.output_dir, record, self.path)
    logging.warning("Taking over the lock of %s left by pid %s (started %s), "
                    "which is no longer running: %s", self.output_dir,
                    record.get("pid"), record.get("started"), self.path)

  def release(self, remove: bool = True) -> None:
    if self.fd is None:
      return
    if remove:
      os.remove(self.path)  # while locked: a waiter then opens a new file
    os.close(self.fd)
    self.fd = None


class _RecordLock:
  """The holder's record alone, for file systems without flock (gs://)."""

  def __init__(self, output_dir: str):
    self.output_dir, self.path = output_dir, lock_path(output_dir)
    self.held = False

  def acquire(self) -> None:
    if tf.io.gfile.exists(self.path):
      with tf.io.gfile.GFile(self.path) as reader:
        record = _parse(reader.read())
      same_host = record and record.get("host") == socket.gethostname()
      if not same_host or holder_is_alive(record):
        raise _in_use(self.output_dir, record, self.path,
                      other_host=not same_host)
      logging.warning("Taking over the lock of %s left by pid %s, which is "
                      "no longer running: %s", self.output_dir,
                      record.get("pid"), self.path)
    with tf.io.gfile.GFile(self.path, "w") as writer:
      writer.write(json.dumps(holder_record()) + "\n")
    self.held = True

  def release(self) -> None:
    if self.held and tf.io.gfile.exists(self.path):
      tf.io.gfile.remove(self.path)
    self.held = False


def _is_local(path: str) -> bool:
  return "://" not in path and fcntl is not None


@contextlib.contextmanager
def hold(output_dir: str, take: bool = True) -> Iterator[None]:
  """Holds the lock on `output_dir` (created if missing) for the block.

  Args:
    output_dir: the run's --output_dir.
    take: False on the tasks of a multi-worker job that are not the chief
      (the chief alone takes the lock and writes the folder's shared files;
      see the module docstring). Single-process runs leave it True.

  Raises:
    UserError: when another live run holds the lock, naming its host and pid
      and the lock file.
  """
  if not take:
    yield
    return
  lock = (_LocalLock if _is_local(output_dir) else _RecordLock)(output_dir)
  lock.acquire()
  try:
    yield
  finally:
    lock.release()
