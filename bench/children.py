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
import signal
import subprocess
from typing import Any, Callable, Iterator, Sequence


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
