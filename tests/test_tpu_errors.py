"""--use_tpu misconfigurations: one `error:` line each, within 30 s.

Every case runs the command line (`cli.run_main`, as `run_ner.py` does) in
this process, so the TensorFlow import is not counted; one case also runs
`python -m trainer.task` as a fresh process. No TPU is needed: the
addresses are a closed port, a port that accepts and never answers, and a
plain TensorFlow server (no TPU devices) on 127.0.0.1.
"""

import os
import re
import socket
import subprocess
import sys
import time

from absl import flags
import pytest
import tensorflow as tf
from tensorflow.python.distribute.cluster_resolver.tpu import (
    tpu_cluster_resolver)

from tests.pipeline_fixtures import TRAIN
from trainer.errors import UserError
from trainer.run import cli
from trainer.training import tpu_cluster

FLAGS = flags.FLAGS
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_SECONDS = 30


@pytest.fixture(autouse=True)
def defined_flags():
  if "do_train" not in FLAGS:
    cli.define_flags()
  FLAGS.unparse_flags()
  yield
  FLAGS.unparse_flags()


@pytest.fixture(name="closed_port")
def closed_port_fixture():
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


@pytest.fixture(name="silent_port")
def silent_port_fixture():
  """A port that accepts connections and never says a word."""
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]


@pytest.fixture(name="no_metadata_server")
def no_metadata_server_fixture(monkeypatch, closed_port):
  """GCE metadata requests go to a closed port on 127.0.0.1."""
  monkeypatch.delenv("GCE_METADATA_HOST", raising=False)
  monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{closed_port}")


@pytest.fixture(name="no_client_library")
def no_client_library_fixture(monkeypatch):
  """As without cloud-tpu-client, even where `.[tpu]` is installed."""
  monkeypatch.setattr(tpu_cluster_resolver.client,
                      "_GOOGLE_API_CLIENT_INSTALLED", False)


def _run_cli(tmp_path, capsys, *tpu_flags):
  """(exit code, stderr lines, seconds) of a --use_tpu --do_train run."""
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  (data_dir / "train.txt").write_text(TRAIN, encoding="utf-8")
  start = time.monotonic()
  with pytest.raises(SystemExit) as raised:
    cli.run_main(["run_ner.py", "--do_train", f"--data_dir={data_dir}",
                  f"--output_dir={tmp_path / 'out'}", "--use_tpu",
                  *tpu_flags])
  seconds = time.monotonic() - start
  assert not (tmp_path / "out").exists()  # stopped before any work
  return (raised.value.code, capsys.readouterr().err.strip().split("\n"),
          seconds)


def _assert_one_error_line(code, lines, seconds, expected):
  assert code == 1
  assert len(lines) == 1, lines
  assert re.fullmatch(expected, lines[0]), lines[0]
  assert seconds < LIMIT_SECONDS


def test_name_zone_and_project_without_the_client_library(
    tmp_path, capsys, no_client_library):  # pylint: disable=unused-argument
  _assert_one_error_line(*_run_cli(
      tmp_path, capsys, "--tpu_name=my-tpu", "--tpu_zone=us-central1-b",
      "--gcp_project=my-project"),
      re.escape("error: --tpu_name=my-tpu --tpu_zone=us-central1-b "
                "--gcp_project=my-project: resolving a TPU name needs "
                "cloud-tpu-client, which is not installed: pip install -e "
                ".[tpu] (the cloud-tpu-client package), or pass the TPU's "
                "address as --tpu_name=grpc://IP:8470."))


def test_name_without_zone_and_no_metadata_server(
    tmp_path, capsys, no_metadata_server):  # pylint: disable=unused-argument
  _assert_one_error_line(*_run_cli(tmp_path, capsys, "--tpu_name=my-tpu"),
                         re.escape(
      "error: --tpu_name=my-tpu: could not reach the GCE metadata server (for "
      "the zone and project): [Errno 111] Connection refused; pass "
      "--tpu_zone and --gcp_project, run on a Google Cloud VM, or pass the "
      "TPU's address as --tpu_name=grpc://IP:8470."))


def test_local_without_a_tpu(tmp_path, capsys):
  _assert_one_error_line(*_run_cli(tmp_path, capsys, "--tpu_name=local"),
                         re.escape(
      "error: --tpu_name=local: this machine has no TPU (its devices: CPU). "
      "Run on a TPU VM, pass the TPU's name or grpc:// address, or drop "
      "--use_tpu."))


def test_closed_port(tmp_path, capsys, closed_port):
  address = f"grpc://127.0.0.1:{closed_port}"
  _assert_one_error_line(*_run_cli(tmp_path, capsys, f"--tpu_name={address}"),
                         re.escape(
      f"error: --tpu_name={address}: nothing listens there (Connection "
      "refused); check the TPU's address (Cloud TPUs answer on port 8470) "
      "and that the TPU is running."))


def test_address_that_never_answers(tmp_path, capsys, silent_port):
  address = f"grpc://127.0.0.1:{silent_port}"
  code, lines, seconds = _run_cli(tmp_path, capsys, f"--tpu_name={address}",
                                  "--tpu_timeout_seconds=2")
  _assert_one_error_line(code, lines, seconds, re.escape(
      f"error: --tpu_name={address}: did not list its devices within "
      "--tpu_timeout_seconds=2; check that the address is a TPU (Cloud TPUs "
      "answer on port 8470) and that it is running."))
  assert seconds >= 2  # it waited for the address, then gave up


def test_tensorflow_server_without_tpu_cores(tmp_path, capsys):
  server = tf.distribute.Server.create_local_server()
  address = server.target  # grpc://localhost:<port>
  _assert_one_error_line(*_run_cli(tmp_path, capsys, f"--tpu_name={address}"),
                         re.escape(
      f"error: --tpu_name={address}: {address} has no TPU cores (its "
      "devices: CPU); it is a TensorFlow server but not a TPU. Check the "
      "TPU's name or address."))


def test_timeout_flag_must_be_positive(tmp_path, capsys):
  code, lines, _ = _run_cli(tmp_path, capsys, "--tpu_name=local",
                            "--tpu_timeout_seconds=0")
  assert (code, lines) == (
      1, ["error: --tpu_timeout_seconds=0 must be at least 1."])


def test_too_few_cores_is_refused(monkeypatch):
  monkeypatch.setattr(tpu_cluster, "_resolver",
                      lambda *args: ("resolver", ""))
  monkeypatch.setattr(tpu_cluster, "_tpu_cores",
                      lambda master, seconds: (2, ["CPU", "TPU"]))
  with pytest.raises(UserError) as raised:
    tpu_cluster.resolve("local", None, None, 8, 5)
  assert str(raised.value) == (
      "--num_tpu_cores=8, but --tpu_name=local has 2 TPU cores; pass "
      "--num_tpu_cores=2.")
  assert tpu_cluster.resolve("local", None, None, 2, 5) == "resolver"


def test_call_with_timeout():
  assert tpu_cluster.call_with_timeout(lambda: 7, 1) == 7
  with pytest.raises(KeyError):
    tpu_cluster.call_with_timeout(lambda: {}["missing"], 1)
  start = time.monotonic()
  with pytest.raises(tpu_cluster._NoAnswer):  # pylint: disable=protected-access
    tpu_cluster.call_with_timeout(lambda: time.sleep(5), 0.2)
  assert time.monotonic() - start < 2


def test_fresh_process_closed_port(tmp_path, closed_port):
  """The command as a user runs it: exit 1, one error line, no traceback."""
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  (data_dir / "train.txt").write_text(TRAIN, encoding="utf-8")
  address = f"grpc://127.0.0.1:{closed_port}"
  start = time.monotonic()
  process = subprocess.run(
      [sys.executable, "-m", "trainer.task", "--do_train",
       f"--data_dir={data_dir}", f"--output_dir={tmp_path / 'out'}",
       "--use_tpu", f"--tpu_name={address}"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
  seconds = time.monotonic() - start
  errors = [line for line in process.stderr.splitlines()
            if line.startswith("error:")]
  assert process.returncode == 1
  assert errors == [f"error: --tpu_name={address}: nothing listens there "
                    "(Connection refused); check the TPU's address (Cloud "
                    "TPUs answer on port 8470) and that the TPU is running."]
  assert "Traceback" not in process.stderr
  assert seconds < LIMIT_SECONDS
