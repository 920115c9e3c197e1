"""Errors a user can fix, kept apart from bugs.

A `UserError` says what is wrong with the run's flags, files or machine and
how to fix it; the command line (`trainer.run.cli.run_main`) prints it as one
``error: ...`` line and exits 1. Any other exception is a bug and keeps its
traceback. Pure Python (no TensorFlow import).

Example::

    with environment_errors_as_user_errors("out"):
      write_checkpoint()   # raises OSError(ENOSPC, ..., "out/model.ckpt-3")
    # -> UserError("out/model.ckpt-3: no space left on device
    #               (--output_dir=out)")
"""

import contextlib
import errno
import os
from typing import Iterator, Optional

# File-system failures caused by the machine, not by the code: a user fixes
# them by freeing space, choosing another folder or changing permissions.
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                      errno.EPERM, errno.ENOTDIR, errno.EISDIR)


class UserError(ValueError):
  """A bad flag, input file or environment, explained with its fix.

  Subclasses ValueError so that code catching the data modules' ValueErrors
  (which name file:line) catches these too.
  """


def environment_cause(error: BaseException) -> Optional[str]:
  """The OS's reason when `error` is one of `ENVIRONMENT_ERRNOS`, else None.

  Works on `OSError` (its errno) and on TensorFlow's file errors, which carry
  the OS message in their text ("/dev/full; No space left on device").

  Example: OSError(errno.ENOSPC, "x") -> "no space left on device";
  KeyError("k") -> None.
  """
  if isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS:
    return os.strerror(error.errno).lower()
  if hasattr(error, "error_code"):  # tf.errors.OpError, without importing TF
    for code in ENVIRONMENT_ERRNOS:
      if os.strerror(code) in str(error):
        return os.strerror(code).lower()
  return None


def _failed_path(error: BaseException) -> Optional[str]:
  """The file an OS or TensorFlow file error names, if any."""
  if isinstance(error, OSError) and error.filename:
    return str(error.filename)
  message = str(error)
  if "; " in message:  # TensorFlow: "<path>; <strerror>"
    return message.split("; ", 1)[0].strip()
  return None


@contextlib.contextmanager
def environment_errors_as_user_errors(output_dir: str) -> Iterator[None]:
  """Re-raises full-disk and permission errors as one-line `UserError`s.

  Every other exception passes through unchanged, traceback included.

  Args:
    output_dir: the run's --output_dir, named in the message.

  Raises:
    UserError: "<path>: <cause> (--output_dir=<output_dir>)".
  """
  try:
    yield
  except UserError:
    raise
  except Exception as error:  # pylint: disable=broad-except
    cause = environment_cause(error)
    if cause is None:
      raise
    path = _failed_path(error) or output_dir
    raise UserError(f"{path}: {cause} (--output_dir={output_dir})") from error
