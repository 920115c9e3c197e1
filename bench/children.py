"""Child processes of the bench scripts, ended together with their parent.

A bench script runs each measurement in a child process (its own peak
memory, its own `TF_ENABLE_ONEDNN_OPTS`, a framework the parent never
imports). SIGTERM's default action (`kill`, a job scheduler, a CI timeout)
ends the parent at once, without `finally` blocks or `with` exits, so the
child would train on as an orphan. While children run, these helpers turn
SIGTERM into `SystemExit`, so the usual clean-up runs on the way out:
`subprocess.run` kills its child on any exception, and a multiprocessing
`Pool` terminates its workers when its `with` block exits.

    from bench import children

    children.run_child([sys.executable, "-m", "bench.op_profile", "--child",
                        spec], check=True, capture_output=True, text=True)
    children.run_in_fresh_process(max, 1, 2)  # -> 2, computed in a worker

The parent then exits with status 128 + 15 = 143, as a shell reports a
process ended by SIGTERM. Signal handlers can only be set from the main
thread, where every bench script calls these.
"""

import contextlib
import multiprocessing
import os
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Iterator, Sequence, Tuple


def _exit_on_sigterm(signum, unused_frame):
  raise SystemExit(128 + signum)


@contextlib.contextmanager
def sigterm_as_system_exit() -> Iterator[None]:
  """Within the block SIGTERM raises SystemExit(143); then the old handler.

  Example:
    with sigterm_as_system_exit():
      subprocess.run(command)  # a SIGTERM here kills `command` too
  """
  previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)


def run_child(command: Sequence[str],
              **kwargs: Any) -> subprocess.CompletedProcess:
  """`subprocess.run(command, **kwargs)`, killing the child if told to stop.

  A SIGTERM to this process kills the child (SIGKILL), waits for it, then
  exits with SystemExit(143). Example:
    run_child(["echo", "hi"], capture_output=True, text=True).stdout
    -> "hi\\n"
  """
  # `check` is the caller's choice, passed in kwargs.
  with sigterm_as_system_exit():
    return subprocess.run(command, **kwargs)  # pylint: disable=W1510


def run_in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
  """`function(*args)` in a spawned process; returns its result.

  The worker has its own peak memory and leaves nothing behind. A SIGTERM
  to this process ends the worker with it: the pool is terminated on the
  way out instead of the worker running on as an orphan. `function` and
  `args` must pickle (a module-level function). Example:
  run_in_fresh_process(max, 1, 2) -> 2.
  """
  with sigterm_as_system_exit():
    with multiprocessing.get_context("spawn").Pool(1) as pool:
      return pool.apply(function, args)


def tree_rss_bytes(pid: int) -> int:
  """Resident memory of `pid` and all its descendants (Linux /proc), bytes.

  Processes that end while being read count 0. Example: for a shell that
  runs one 300 MB Python child -> about 300 MB plus the shell's few MB.
  """
  total, stack = 0, [pid]
  while stack:
    current = stack.pop()
    try:
      with open(f"/proc/{current}/status", encoding="ascii") as reader:
        for line in reader:
          if line.startswith("VmRSS:"):
            total += int(line.split()[1]) * 1024
      for task in os.listdir(f"/proc/{current}/task"):
        with open(f"/proc/{current}/task/{task}/children",
                  encoding="ascii") as reader:
          stack += [int(child) for child in reader.read().split()]
    except (OSError, ValueError):
      continue
  return total


def run_child_with_peak_memory(command: Sequence[str], interval_s: float = 0.2
                               ) -> Tuple[subprocess.CompletedProcess, int]:
  """Runs `command` (stdout and stderr together, as text) like `run_child`,
  sampling its process tree's memory every `interval_s` seconds.

  Returns:
    (the completed process, peak summed resident bytes of the tree): a
    command that starts worker processes is measured with its workers.
  """
  with sigterm_as_system_exit():
    process = subprocess.Popen(command, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample():
      while process.poll() is None:
        peak[0] = max(peak[0], tree_rss_bytes(process.pid))
        time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
      output, _ = process.communicate()
    except BaseException:
      process.kill()
      process.wait()
      raise
    sampler.join()
    return (subprocess.CompletedProcess(command, process.returncode, output,
                                        None), peak[0])
