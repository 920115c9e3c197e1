"""gfile_io: bytes through tf.io.gfile, on local disk and TF filesystems."""

import pytest

from trainer import gfile_io


@pytest.mark.parametrize("where", ["local", "ram"])
def test_write_then_read_round_trips_bytes(tmp_path, where):
  path = (str(tmp_path / "labels.txt") if where == "local"
          else "ram://gfile_io_test/labels.txt")
  data = "O\nB-地名\n".encode("utf-8")
  gfile_io.write_bytes(path, data)
  assert gfile_io.read_bytes(path) == data
  gfile_io.write_bytes(path, b"O\n")  # replaces, not appends
  assert gfile_io.read_bytes(path) == b"O\n"
