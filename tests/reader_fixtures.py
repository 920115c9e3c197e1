"""Helpers for the reader tests: inline fixture files and tests/testdata."""

import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = os.path.join(REPO_ROOT, "tests", "testdata")


def data_path(name: str) -> str:
  """Path of a file in tests/testdata."""
  return os.path.join(TESTDATA, name)


def write(tmp_path, name: str, content) -> str:
  """Writes str (as UTF-8) or bytes to tmp_path/name and returns the path."""
  path = tmp_path / name
  if isinstance(content, str):
    content = content.encode("utf-8")
  path.write_bytes(content)
  return str(path)
