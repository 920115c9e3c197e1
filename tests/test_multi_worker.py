"""Two worker processes on 127.0.0.1 train one model with TF_CONFIG."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.tiny_bert import write_workspace
from trainer.run import train_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port():
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


@pytest.mark.slow  # end to end, tens of seconds
def test_two_workers_train_and_chief_evaluates(tmp_path):
  files = write_workspace(tmp_path)
  vocab, bert_config = files["vocab_file"], files["bert_config_file"]
  data_dir = files["data_dir"]
  flags = [f"--data_dir={data_dir}", f"--bert_config_file={bert_config}",
           f"--vocab_file={vocab}", "--max_seq_length=10", "--doc_stride=3",
           "--train_batch_size=4", "--num_train_steps=4",
           "--save_checkpoints_steps=2", "--learning_rate=0.01", "--seed=1"]
  cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
  output_dir = tmp_path / "distributed"
  processes = []
  try:
    for index in range(2):
      env = dict(os.environ, TF_CONFIG=json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": index}}))
      processes.append(subprocess.Popen(
          [sys.executable, "-m", "trainer.task", "--do_train",
           f"--output_dir={output_dir}"] + flags,
          cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
          stderr=subprocess.PIPE, text=True))
    for process in processes:
      _, stderr = process.communicate(timeout=240)
      assert process.returncode == 0, stderr[-3000:]
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
  assert tf.train.latest_checkpoint(str(output_dir)).endswith("model.ckpt-4")

  # The chief's checkpoint evaluates like a single-process run's.
  results = {}
  for name, out in (("distributed", output_dir), ("single", tmp_path / "one")):
    config = train_lib.NerConfig(
        output_dir=str(out), data_dir=str(data_dir),
        bert_config_file=str(bert_config), vocab_file=str(vocab),
        max_seq_length=10, doc_stride=3, train_batch_size=4,
        num_train_steps=4, learning_rate=0.01, seed=1,
        do_train=name == "single", do_eval=True)
    results[name] = train_lib.run(config)["eval"]
  assert results["distributed"]["global_step"] == 4
  assert np.isfinite(results["distributed"]["loss"])
  assert abs(results["distributed"]["token_accuracy"]
             - results["single"]["token_accuracy"]) < 0.2
