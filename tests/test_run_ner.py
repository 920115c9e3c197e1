"""run_ner.py as a user runs it: a separate process, its exit status, stderr."""

import os
import subprocess
import sys

import pytest

import run_ner
from trainer.run import cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  return subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "run_ner.py"), *args],
      capture_output=True, text=True, timeout=300)


def _error_lines(stderr):
  return [line for line in stderr.split("\n") if line.startswith("error:")]


def test_console_script_entry_point_is_the_package_main():
  # setup.py: run-ner=run_ner:run_main
  assert run_ner.run_main is cli.run_main


def test_bad_data_exits_1_with_file_and_line(tmp_path):
  bad = tmp_path / "train.txt"
  bad.write_text("EU B-ORG\nrejects O\nGerman B-MISC\ncall X-MISC\n",
                 encoding="utf-8")
  result = _run("--do_train", f"--train_file={bad}",
                f"--output_dir={tmp_path / 'out'}")
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  [line] = _error_lines(result.stderr)
  assert line.startswith(f"error: {bad}:4")
  assert "X-MISC" in line


@pytest.mark.parametrize("output_dir, message", [
    ("out", "--output_dir={out} is a file, not a directory; pass a folder "
     "(it is created if missing)."),
    ("out/sub", "Cannot create --output_dir={out}/sub: {out} is not a "
     "directory"),
])
def test_output_dir_on_a_file_exits_1_without_traceback(tmp_path, output_dir,
                                                        message):
  out = tmp_path / "out"
  out.write_text("")
  result = _run("--do_train", f"--output_dir={tmp_path / output_dir}")
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  assert _error_lines(result.stderr) == [f"error: {message.format(out=out)}"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only dirs")
def test_read_only_output_dir_exits_1_without_traceback(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  out.chmod(0o555)
  try:
    result = _run("--do_train", f"--output_dir={out}")
  finally:
    out.chmod(0o755)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  [line] = _error_lines(result.stderr)
  assert line.startswith(f"error: {out}/") and "permission denied" in line
