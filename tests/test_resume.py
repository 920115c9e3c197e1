"""A killed training job, rerun with the same command, resumes and finishes."""

import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from tests.tiny_bert import write_workspace

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _latest_step(output_dir):
  checkpoint = tf.train.latest_checkpoint(output_dir)
  return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else None


@pytest.mark.slow  # end to end, tens of seconds
def test_sigkill_then_rerun_resumes_from_last_checkpoint(tmp_path):
  files = write_workspace(tmp_path)
  vocab, config = files["vocab_file"], files["bert_config_file"]
  train = os.path.join(files["data_dir"], "train.txt")
  output_dir = tmp_path / "out"
  command = [sys.executable, "-m", "trainer.task", "--do_train",
             f"--train_file={train}", f"--bert_config_file={config}",
             f"--vocab_file={vocab}", f"--output_dir={output_dir}",
             "--max_seq_length=16", "--doc_stride=4", "--train_batch_size=2",
             "--num_train_steps=400", "--save_checkpoints_steps=10"]
  process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 240
    while time.time() < deadline:
      step = _latest_step(str(output_dir)) if output_dir.exists() else None
      if step and step >= 20:
        break
      assert process.poll() is None, "training ended before it was killed"
      time.sleep(0.2)
    else:
      raise AssertionError("no checkpoint past step 20 within 240 s")
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
  finally:
    if process.poll() is None:
      process.kill()
  killed_at = _latest_step(str(output_dir))
  assert 20 <= killed_at < 400

  rerun = subprocess.run(command, cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert (f"Restoring parameters from {output_dir}/model.ckpt-{killed_at}"
          in rerun.stderr)
  assert "Reusing" in rerun.stderr  # the feature cache survived the kill
  assert _latest_step(str(output_dir)) == 400
