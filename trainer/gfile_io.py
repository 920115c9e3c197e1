"""Byte readers/writers through `tf.io.gfile` (local, gs://, ram://, ...).

The pure data modules take these as arguments, so they work on any
filesystem TensorFlow knows without importing TensorFlow themselves.
"""

import tensorflow as tf


def read_bytes(path):
  """All bytes of `path`."""
  with tf.io.gfile.GFile(path, "rb") as reader:
    return reader.read()


def write_bytes(path, data):
  """Writes `data` (bytes) to `path`, replacing it."""
  with tf.io.gfile.GFile(path, "wb") as writer:
    writer.write(data)
