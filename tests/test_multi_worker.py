"""Several workers with TF_CONFIG on one --output_dir: roles, shared inputs,
the logged loss.

The end-to-end test starts two `python -m trainer.task` workers on 127.0.0.1
(worker 0 is the chief) and a single-process run beside them; the other
tests drive `trainer.run.multi_worker` in-process.
"""

import json
import os
import re
import socket
import subprocess
import sys

import pytest
import tensorflow as tf

from tests.pipeline_fixtures import DEV
from tests.pipeline_fixtures import TRAIN
from trainer import schema
from trainer.errors import UserError
from trainer.run import multi_worker
from trainer.run import run_inputs
from trainer.run import train_lib
from trainer.run.config import NerConfig
from trainer.training import roles

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
CHIEF = roles.task_role({"cluster": CLUSTER,
                         "task": {"type": "worker", "index": 0}})
WORKER_1 = roles.task_role({"cluster": CLUSTER,
                            "task": {"type": "worker", "index": 1}})
# The Estimator's own "loss = 1.79, step = 0" line (the summed spec loss).
STEP_0_LOSS = re.compile(r"loss = ([0-9.]+), step = 0\b")


def _free_port():
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def _data_dir(tmp_path):
  data_dir = tmp_path / "data"
  data_dir.mkdir(parents=True)
  (data_dir / "train.txt").write_text(TRAIN, encoding="utf-8")
  (data_dir / "dev.txt").write_text(DEV, encoding="utf-8")
  (data_dir / "test.txt").write_text(DEV, encoding="utf-8")
  return data_dir


def _step_0_loss(log):
  found = STEP_0_LOSS.findall(log)
  assert found, log[-3000:]
  return float(found[0])


def test_two_workers_one_chief_one_set_of_outputs(tmp_path):
  """From-scratch model (the chief builds vocab.txt), eval + predict + export.

  Today's bug: both workers believed they were the chief (RunConfig says so
  under MultiWorkerMirroredStrategy): export/1 and export/2, two result
  writers, and a step-0 loss of twice the single-process one.
  """
  data_dir = _data_dir(tmp_path)
  flags = [f"--data_dir={data_dir}", "--max_seq_length=10", "--doc_stride=3",
           "--train_batch_size=4", "--eval_batch_size=4",
           "--predict_batch_size=4", "--num_train_steps=3",
           "--save_checkpoints_steps=3", "--learning_rate=0.01", "--seed=1",
           "--chief_wait_seconds=200"]
  cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
  shared = tmp_path / "shared"
  commands = []
  for index in range(2):
    commands.append((dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}})),
                     ["--do_train", "--do_eval", "--do_predict", "--do_export",
                      f"--output_dir={shared}"]))
  # The same first batch in one process, for the step-0 loss.
  single_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
  commands.append((single_env, ["--do_train", "--num_train_steps=1",
                                f"--output_dir={tmp_path / 'single'}"]))
  processes = []
  try:
    for env, args in commands:
      processes.append(subprocess.Popen(  # the last --num_train_steps wins
          [sys.executable, "-m", "trainer.task"] + flags + args,
          cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
          stderr=subprocess.PIPE, text=True))
    outputs = [process.communicate(timeout=300) for process in processes]
  except subprocess.TimeoutExpired:
    for process in processes:
      process.kill()
    logs = [process.communicate()[1][-1500:] for process in processes]
    pytest.fail("Not finished within 300 s; the logs' ends (chief, worker 1, "
                "single process):\n" + "\n-----\n".join(logs))
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
  for process, (_, stderr) in zip(processes, outputs):
    assert process.returncode == 0, stderr[-3000:]
  (chief_out, chief_log), (worker_out, worker_log), (_, single_log) = outputs

  assert tf.train.latest_checkpoint(str(shared)).endswith("model.ckpt-3")
  assert not (shared / "tmp_worker_1").exists()  # worker 1's scratch copy
  assert sorted(os.listdir(shared / schema.EXPORT_DIRNAME)) == ["1"]
  best = sorted(os.listdir(shared / schema.BEST_EXPORT_DIRNAME))
  assert best == ["1", "best_export.json"]
  for name in (schema.EVAL_RESULTS_FILENAME, schema.PREDICT_RESULTS_FILENAME,
               schema.PREDICTIONS_CONLL_FILENAME, schema.REPORT_FILENAME):
    assert (shared / name).is_file(), name
  # One chief did the work; worker 1 read its files and stopped.
  assert "eval:" in chief_out and "SavedModel:" in chief_out
  assert "eval:" not in worker_out and "SavedModel:" not in worker_out
  for phase in ("***** Evaluating", "Predicted ", "Exported"):
    assert phase not in worker_log, phase
  assert "***** Evaluating" in chief_log
  assert "worker 1 of 2: training from the chief's inputs" in worker_log
  assert "worker 1 of 2: training done; the chief evaluates" in worker_log
  assert "Built a " not in worker_log  # the vocabulary is the chief's
  assert "worker 0 of 2: shared inputs ready" in chief_log
  # The logged loss is the replicas' mean: the single process's, within 5%.
  single = _step_0_loss(single_log)
  assert abs(_step_0_loss(chief_log) - single) <= 0.05 * single, (
      _step_0_loss(chief_log), single)


def _config(tmp_path, **overrides):
  settings = dict(output_dir=str(tmp_path / "out"),
                  data_dir=str(_data_dir(tmp_path)), max_seq_length=10,
                  doc_stride=3, do_train=True, chief_wait_seconds=1)
  settings.update(overrides)
  return NerConfig(**settings)


def test_worker_reads_what_the_chief_published(tmp_path):
  config = _config(tmp_path)
  chief_inputs = run_inputs.RunInputs(config).prepare()
  path = multi_worker.publish(config, chief_inputs, CHIEF)
  assert path == str(tmp_path / "out" / "cache" / "chief_inputs.json")
  written = sorted(os.listdir(tmp_path / "out"))

  worker = multi_worker.wait_for_chief(config, WORKER_1)
  assert worker.labels == chief_inputs.labels == [
      "O", "B-LOC", "B-ORG", "B-PER", "I-LOC"]
  assert worker.features_file("train") == chief_inputs.features_file("train")
  assert worker.tokenizer.vocab == chief_inputs.tokenizer.vocab
  assert sorted(os.listdir(tmp_path / "out")) == written  # wrote nothing
  with pytest.raises(AssertionError):
    worker.features_file("dev")


def test_worker_gives_up_when_the_chief_never_writes(tmp_path):
  config = _config(tmp_path)
  with pytest.raises(UserError) as raised:
    multi_worker.wait_for_chief(config, WORKER_1)
  path = tmp_path / "out" / "cache" / "chief_inputs.json"
  assert str(raised.value).startswith(
      f"worker 1 of 2 waited 1 s (--chief_wait_seconds) for the chief's "
      f"shared inputs {path}, but it does not exist yet. Start the chief")


def test_worker_refuses_a_record_of_other_settings(tmp_path):
  chief_config = _config(tmp_path, seed=1)
  multi_worker.publish(chief_config,
                       run_inputs.RunInputs(chief_config).prepare(), CHIEF)
  worker_config = NerConfig(**dict(vars(chief_config), seed=2))
  with pytest.raises(UserError) as raised:
    multi_worker.wait_for_chief(worker_config, WORKER_1)
  assert ("but it was written for other settings (--seed=2 here, 1 on the "
          "chief); give every worker the same flags") in str(raised.value)


def test_worker_refuses_a_record_of_changed_training_data(tmp_path):
  config = _config(tmp_path)
  multi_worker.publish(config, run_inputs.RunInputs(config).prepare(), CHIEF)
  train_file = tmp_path / "data" / "train.txt"
  train_file.write_text(DEV, encoding="utf-8")
  with pytest.raises(UserError) as raised:
    multi_worker.wait_for_chief(config, WORKER_1)
  assert (f"but it was written for other training data than {train_file} "
          "(the file changed?)") in str(raised.value)


def test_remove_worker_scratch(tmp_path):
  config = _config(tmp_path)
  scratch = tmp_path / "out" / "tmp_worker_1"
  scratch.mkdir(parents=True)
  (scratch / "model.ckpt-3.index").write_bytes(b"x")
  multi_worker.remove_worker_scratch(config, CHIEF)  # not the chief's
  assert scratch.exists()
  multi_worker.remove_worker_scratch(config, WORKER_1)
  assert not scratch.exists()
  multi_worker.remove_worker_scratch(config, WORKER_1)  # gone: no error


def test_the_chief_withdraws_an_earlier_record(tmp_path):
  config = _config(tmp_path)
  path = multi_worker.publish(config, run_inputs.RunInputs(config).prepare(),
                              CHIEF)
  multi_worker.withdraw(config)
  assert not os.path.exists(path)
  multi_worker.withdraw(config)  # nothing to remove: no error


def test_eval_every_steps_is_refused_with_several_workers(tmp_path,
                                                           monkeypatch):
  monkeypatch.setenv("TF_CONFIG", json.dumps(
      {"cluster": CLUSTER, "task": {"type": "worker", "index": 0}}))
  config = _config(tmp_path, do_eval=True, eval_every_steps=2)
  with pytest.raises(UserError) as raised:
    train_lib.run(config)
  assert str(raised.value) == (
      "--eval_every_steps=2 does not work with multi-worker training "
      "(TF_CONFIG names 2 workers; this is worker 0 of 2): the workers train "
      "together to the last step and the chief evaluates once after "
      "training. Drop --eval_every_steps, or train in one process.")
  assert not os.path.exists(config.output_dir)  # refused before any work
  # One process, or no evaluation: allowed.
  multi_worker.check_flags(config, roles.SINGLE_PROCESS)
  multi_worker.check_flags(_config(tmp_path / "b", eval_every_steps=2),
                           CHIEF)


@pytest.mark.parametrize("name", ["chief_wait_seconds", "tpu_timeout_seconds"])
def test_wait_and_timeout_flags_must_be_positive(tmp_path, name):
  with pytest.raises(UserError) as raised:
    _config(tmp_path, **{name: 0}).validate()
  assert str(raised.value) == f"--{name}=0 must be at least 1."


def test_the_chief_tags_with_the_teacher_before_it_publishes(
    tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(
      train_lib.distill_run, "teacher_targets",
      lambda config, inputs, path, estimator=None: calls.append(
          ("teacher", path)))
  monkeypatch.setattr(multi_worker, "publish",
                      lambda config, inputs, role: calls.append(("publish",)))
  config = _config(tmp_path)
  inputs = train_lib._chief_inputs(config, CHIEF)
  assert calls == [("teacher", inputs.features_file("train")[0]),
                   ("publish",)]
  # A single process builds them when it trains, as before.
  calls.clear()
  train_lib._chief_inputs(config, roles.TaskRole())
  assert calls == []
