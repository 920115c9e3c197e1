"""trainer.run.output_lock: one writing run per --output_dir."""

import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.tiny_bert import make_config
from trainer.errors import UserError
from trainer.run import output_lock
from trainer.run import train_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dead_pid():
  """The pid of a process that has exited (and was reaped)."""
  process = subprocess.Popen([sys.executable, "-c", "pass"])
  process.wait()
  return process.pid


def _write_record(folder, **record):
  path = output_lock.lock_path(str(folder))
  with open(path, "w", encoding="utf-8") as writer:
    writer.write(json.dumps(record) + "\n")
  return path


def test_a_second_holder_is_refused_naming_host_and_pid(tmp_path):
  with output_lock.hold(str(tmp_path)):
    with open(output_lock.lock_path(str(tmp_path)), encoding="utf-8") as lock:
      record = json.loads(lock.read())
    assert (record["host"], record["pid"]) == (socket.gethostname(),
                                               os.getpid())
    with pytest.raises(UserError) as refused:
      with output_lock.hold(str(tmp_path)):
        pass
  assert str(refused.value).startswith(
      f"{tmp_path} is in use by another run (host {socket.gethostname()}, "
      f"pid {os.getpid()}, started {record['started']}; lock file "
      f"{tmp_path}/{output_lock.LOCK_FILENAME}).")
  # Released: the file is gone and the next run takes the lock.
  assert not os.path.exists(output_lock.lock_path(str(tmp_path)))
  with output_lock.hold(str(tmp_path)):
    assert os.path.exists(output_lock.lock_path(str(tmp_path)))


def test_a_dead_holder_of_this_host_is_taken_over_with_a_warning(
    tmp_path, caplog):
  pid = _dead_pid()
  _write_record(tmp_path, host=socket.gethostname(), pid=pid,
                process_start="1", started="2026-01-01T00:00:00Z")
  with caplog.at_level(logging.WARNING):
    with output_lock.hold(str(tmp_path)):
      with open(output_lock.lock_path(str(tmp_path)),
                encoding="utf-8") as lock:
        assert json.loads(lock.read())["pid"] == os.getpid()
  assert (f"Taking over the lock of {tmp_path} left by pid {pid} (started "
          "2026-01-01T00:00:00Z), which is no longer running") in caplog.text


def test_a_reused_pid_counts_as_dead_and_a_live_one_as_holding(tmp_path):
  parent = os.getppid()  # alive, but started at another time than recorded
  record = {"host": socket.gethostname(), "pid": parent}
  assert not output_lock.holder_is_alive(dict(record, process_start="1"))
  assert output_lock.holder_is_alive(
      dict(record, process_start=output_lock._process_start(parent)))  # pylint: disable=protected-access
  assert not output_lock.holder_is_alive({"pid": _dead_pid()})
  _write_record(tmp_path, **record, process_start="1")
  with output_lock.hold(str(tmp_path)):
    pass


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
  path = _write_record(tmp_path, host="other-host", pid=1,
                       started="2026-01-01T00:00:00Z")
  with pytest.raises(UserError, match=(
      "in use by another run \\(host other-host, pid 1, started "
      "2026-01-01T00:00:00Z; lock file .*\\)\\. .*delete the lock file if no "
      "run is active on that host any more")):
    with output_lock.hold(str(tmp_path)):
      pass
  assert os.path.exists(path)  # still there: the other host may be writing


def test_take_false_takes_nothing(tmp_path):
  with output_lock.hold(str(tmp_path), take=False):
    assert not os.path.exists(output_lock.lock_path(str(tmp_path)))
    with output_lock.hold(str(tmp_path)):  # the chief's
      pass


def test_remote_folders_get_the_record_without_flock():
  folder = "ram://output_lock_test"
  with output_lock.hold(folder):
    with pytest.raises(UserError, match=f"pid {os.getpid()}"):
      with output_lock.hold(folder):
        pass
  with output_lock.hold(folder):
    pass


def test_two_runs_on_one_output_dir_one_is_refused(workspace):  # pylint: disable=redefined-outer-name
  """The issue's case: a second training run on a folder in use fails at once."""
  config = make_config(workspace, do_train=True, num_train_steps=100000,
                       save_checkpoints_steps=100000)
  first = subprocess.Popen(
      [sys.executable, "-m", "trainer.task", "--do_train",
       f"--output_dir={config.output_dir}",
       f"--data_dir={config.data_dir}",
       f"--bert_config_file={config.bert_config_file}",
       f"--vocab_file={config.vocab_file}", "--max_seq_length=10",
       "--doc_stride=3", "--train_batch_size=2", "--num_train_steps=100000",
       "--save_checkpoints_steps=100000"],
      cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    lock = output_lock.lock_path(config.output_dir)
    deadline = time.time() + 120
    while not (os.path.exists(lock) and os.path.getsize(lock)):
      assert first.poll() is None, "the first run ended early"
      assert time.time() < deadline, "the first run took no lock in 120 s"
      time.sleep(0.1)
    with pytest.raises(UserError) as refused:
      train_lib.run(make_config(workspace, do_train=True, seed=2))
    assert (f"is in use by another run (host {socket.gethostname()}, pid "
            f"{first.pid}, started ") in str(refused.value)
    assert first.poll() is None  # the first run goes on
  finally:
    first.kill()
    first.wait()
  # Its holder is dead now: the next run takes over and trains.
  summary = train_lib.run(make_config(workspace, do_train=True))
  assert summary["train_steps"] == 3
