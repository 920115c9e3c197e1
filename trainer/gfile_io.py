"""Byte readers/writers through `tf.io.gfile` (local, gs://, ram://, ...).

The pure data modules take these as arguments, so they work on any
filesystem TensorFlow knows without importing TensorFlow themselves.
Example: ``labels.read_labels_file("gs://b/labels.txt", gfile_io.read_bytes)``.
"""

import tensorflow as tf


def read_bytes(path: str) -> bytes:
  """All bytes of `path`."""
  with tf.io.gfile.GFile(path, "rb") as reader:
    return reader.read()


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path`, replacing it.

  An existing file is removed first: TensorFlow's ram:// filesystem appends
  to it otherwise.
  """
  if tf.io.gfile.exists(path):
    tf.io.gfile.remove(path)
  with tf.io.gfile.GFile(path, "wb") as writer:
    writer.write(data)
