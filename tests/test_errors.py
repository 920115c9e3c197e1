"""User errors versus bugs: which failures become one `error:` line."""

import errno

import pytest
import tensorflow as tf

from trainer import errors


@pytest.mark.parametrize("error, cause", [
    (OSError(errno.ENOSPC, "No space left on device", "out/x"),
     "no space left on device"),
    (PermissionError(errno.EACCES, "Permission denied", "out"),
     "permission denied"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
    (tf.errors.ResourceExhaustedError(None, None,
                                      "/dev/full; No space left on device"),
     "no space left on device"),
    (tf.errors.PermissionDeniedError(None, None, "out/x; Permission denied"),
     "permission denied"),
    # Not the environment: an out-of-memory error, a missing file, a bug.
    (tf.errors.ResourceExhaustedError(None, None, "OOM when allocating"), None),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "x"), None),
    (KeyError("No space left on device"), None),
])
def test_environment_cause(error, cause):
  assert errors.environment_cause(error) == cause


def test_full_disk_becomes_a_user_error_naming_the_file():
  with pytest.raises(errors.UserError) as raised:
    with errors.environment_errors_as_user_errors("out"):
      raise OSError(errno.ENOSPC, "No space left on device",
                    "out/model.ckpt-3.index")
  assert str(raised.value) == ("out/model.ckpt-3.index: no space left on "
                               "device (--output_dir=out)")
  assert isinstance(raised.value.__cause__, OSError)


def test_tensorflow_error_names_its_path():
  with pytest.raises(errors.UserError, match=r"^out/labels\.txt: permission "
                     r"denied \(--output_dir=out\)$"):
    with errors.environment_errors_as_user_errors("out"):
      raise tf.errors.PermissionDeniedError(None, None,
                                            "out/labels.txt; Permission denied")


def test_error_without_a_path_names_the_output_dir():
  with pytest.raises(errors.UserError, match=r"^out: read-only file system "):
    with errors.environment_errors_as_user_errors("out"):
      raise OSError(errno.EROFS, "Read-only file system")


def test_bugs_and_user_errors_pass_through_unchanged():
  bug = KeyError("label")
  with pytest.raises(KeyError) as raised:
    with errors.environment_errors_as_user_errors("out"):
      raise bug
  assert raised.value is bug
  user = errors.UserError("bad flag")
  with pytest.raises(errors.UserError) as raised:
    with errors.environment_errors_as_user_errors("out"):
      raise user
  assert raised.value is user


def test_user_error_is_a_value_error():
  assert issubclass(errors.UserError, ValueError)
