"""Checksummed cache files: the one rule both feature caches follow.

A cache records, when it is built, the size and SHA-256 of each file it
wrote; before reuse every file must still have them. The feature TFRecords
(`trainer.features.input_pipeline`, sidecar `<file>.json`) and the
encoder-feature cache (`trainer.features.encoder_cache`, `<prefix>.json`)
both check their files here, so "truncated", "overwritten" and "missing"
read the same everywhere:

    problem = cache_files.file_problem(path, sidecar, expected_bytes=2000,
                                       expected_sha256="9f86...")
    # None, or "<path> has 100 bytes, <sidecar> says 2000 (truncated or
    # overwritten)"
"""

import hashlib
from typing import Optional, Sequence

import tensorflow as tf

from trainer.errors import UserError


def file_sha256(path: str) -> str:
  """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (any gfile path)."""
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as reader:
    while True:
      block = reader.read(1 << 20)
      if not block:
        return digest.hexdigest()
      digest.update(block)


def file_problem(path: str, sidecar: str, expected_bytes: Optional[int],
                 expected_sha256: Optional[str]) -> Optional[str]:
  """Why `path` differs from what `sidecar` recorded, or None when it matches.

  Args:
    path: the cached file.
    sidecar: the file that recorded its size and checksum (named in the
      reason).
    expected_bytes: the recorded size (None: not recorded, not checked).
    expected_sha256: the recorded hex SHA-256 (None: written before caches
      had checksums, which is a problem too: the file cannot be checked).
  """
  if not tf.io.gfile.exists(path):
    return f"{path} is missing"
  if expected_sha256 is None:
    return (f"{sidecar} records no checksum of {path} (written by an older "
            "version)")
  size = tf.io.gfile.stat(path).length
  if expected_bytes is not None and size != expected_bytes:
    return (f"{path} has {size} bytes, {sidecar} says {expected_bytes} "
            "(truncated or overwritten)")
  if file_sha256(path) != expected_sha256:
    return (f"{path} does not match the SHA-256 in {sidecar} (its contents "
            "changed since it was written)")
  return None


def remove_files(paths: Sequence[str], what: str, alternative: str) -> None:
  """Deletes the files of a damaged cache, in order, before it is rebuilt.

  Args:
    paths: the cache's files; list the one that marks it complete first.
    what: the cache, for the message ("The BERT feature cache <prefix>").
    alternative: another way out, for the message ("pass another
      --bert_feature_cache_dir").

  Raises:
    UserError: when a file cannot be deleted, naming it and the command that
      removes the cache by hand.
  """
  for path in paths:
    try:
      if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)
    except (tf.errors.OpError, OSError) as error:
      raise UserError(
          f"{what} is damaged and cannot be rebuilt: deleting {path} failed "
          f"({getattr(error, 'message', error)}). Remove it by hand (rm "
          f"{' '.join(paths)}) or {alternative}, then rerun.") from None
