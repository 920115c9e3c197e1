"""trainer.training.hooks: progress lines from fake clocks and fake run values.
"""

import collections
import json

import pytest
import tensorflow as tf

from trainer.training import hooks
from trainer import durations

tf1 = tf.compat.v1

RunValues = collections.namedtuple("RunValues", ["results"])


@pytest.mark.parametrize("seconds, expected", [
    (0, "0h00m00s"),
    (59.9, "0h00m59s"),
    (61, "0h01m01s"),
    (3725.9, "1h02m05s"),
    (100 * 3600, "100h00m00s"),
    (float("inf"), "unknown"),
])
def test_format_seconds(seconds, expected):
  assert durations.format_seconds(seconds) == expected


class _Clock:
  """Stands in for time.time(); `now` is set by the test."""

  def __init__(self, now):
    self.now = now

  def __call__(self):
    return self.now


@pytest.fixture()
def recorded(monkeypatch):
  """Progress lines the hooks log (format string applied), and the clock."""
  lines = []
  clock = _Clock(0.0)
  monkeypatch.setattr(hooks.time, "time", clock)
  monkeypatch.setattr(hooks.logging, "info",
                      lambda message, *args: lines.append(message % args))
  return lines, clock


def test_progress_hook_logs_rate_and_eta(recorded):
  lines, clock = recorded
  with tf.Graph().as_default():
    tf1.train.get_or_create_global_step()
    hook = hooks.ProgressHook(tf.constant(0.0), total_steps=100,
                              batch_size=32, every_secs=15.0)
    hook.begin()
    fetches = hook.before_run(None).fetches
  assert len(fetches) == 2  # (global step, loss)
  for now, step, loss in ((100.0, 1, 2.0),     # starts the clock
                          (105.0, 10, 1.5),    # 5 s < 15 s: quiet
                          (120.0, 61, 0.5),    # 60 steps in 20 s
                          (121.0, 100, 0.25)):  # last step: always logged
    clock.now = now
    hook.after_run(None, RunValues((step, loss)))
  assert lines == [
      "step 61/100 (61.0%): loss 0.5000, 3.00 steps/s, 96.0 examples/s, "
      "ETA 0h00m13s",
      "step 100/100 (100.0%): loss 0.2500, 39.00 steps/s, 1248.0 examples/s, "
      "ETA 0h00m00s"]


def test_progress_hook_logs_the_step_the_run_ends_at(recorded):
  lines, clock = recorded
  with tf.Graph().as_default():
    tf1.train.get_or_create_global_step()
    hook = hooks.ProgressHook(tf.constant(0.0), total_steps=30, batch_size=2,
                              every_secs=15.0)
    hook.begin()
  # The last run reads the step before its update (29); end reads 30.
  for now, step, loss in ((0.0, 0, 2.0), (10.0, 29, 0.5)):
    clock.now = now
    hook.after_run(None, RunValues((step, loss)))
  assert lines == []
  clock.now = 10.0
  hook.end(_StepSession(30))
  assert lines == ["step 30/30 (100.0%): loss 0.5000, 3.00 steps/s, "
                   "6.0 examples/s, ETA 0h00m00s"]
  hook.end(_StepSession(30))  # nothing new: no second line
  assert len(lines) == 1


def test_progress_hook_without_progress_has_unknown_eta(recorded):
  lines, clock = recorded
  with tf.Graph().as_default():
    tf1.train.get_or_create_global_step()
    hook = hooks.ProgressHook(tf.constant(0.0), total_steps=10, batch_size=4,
                              every_secs=1.0)
    hook.begin()
  for now in (0.0, 5.0):
    clock.now = now
    hook.after_run(None, RunValues((3, 1.0)))  # resumed, step did not move
  assert lines == ["step 3/10 (30.0%): loss 1.0000, 0.00 steps/s, "
                   "0.0 examples/s, ETA unknown"]


def test_batch_progress_hook(recorded):
  lines, clock = recorded
  hook = hooks.BatchProgressHook("eval", total_batches=10, every_secs=30.0)
  clock.now = 1000.0
  hook.begin()
  for now in (1010.0, 1030.0, 1040.0):
    clock.now = now
    hook.after_run(None, RunValues(None))
  clock.now = 1045.0
  hook.end(None)
  # At 1030 s: 2 batches in 30 s -> 1/15 batch/s, 8 left -> 120 s.
  assert lines == ["eval: batch 2/10, 0.1 batches/s, ETA 0h02m00s",
                   "eval: 3 batches in 45.0s"]


class _StepSession:
  """Answers the hook's one `session.run(global_step)` with `step`."""

  def __init__(self, step):
    self.step = step

  def run(self, fetches):  # pylint: disable=unused-argument
    return self.step


def _drive(hook, clock, start_step, times):
  with tf.Graph().as_default():
    tf1.train.get_or_create_global_step()
    hook.begin()
    hook.after_create_session(_StepSession(start_step), None)
  for before, after in times:
    clock.now = before
    hook.before_run(None)
    clock.now = after
    hook.after_run(None, RunValues(None))


def test_epoch_timing_hook_logs_and_records_epochs(recorded, tmp_path):
  lines, clock = recorded
  path = str(tmp_path / "train_timing.json")
  # 10 windows, batch 4: 2.5 steps per epoch; epochs end after steps 3, 5,
  # 8 and 10. Step s runs from 10 s to 10 s + s^2.
  hook = hooks.EpochTimingHook(2.5, 10, path)
  assert [hook.end_step(k) for k in range(5)] == [0, 3, 5, 8, 10]
  assert [hook.epoch_of(s) for s in range(1, 11)] == [1, 1, 1, 2, 2, 3, 3, 3,
                                                      4, 4]
  _drive(hook, clock, 0, [(10.0 + (s - 1) ** 2, 10.0 + s ** 2)
                          for s in range(1, 11)])
  assert lines == ["epoch 1/4: 9.0 s", "epoch 2/4: 16.0 s",
                   "epoch 3/4: 39.0 s", "epoch 4/4: 36.0 s"]
  assert hooks.epoch_seconds(path) == {1: 9.0, 2: 16.0, 3: 39.0, 4: 36.0}
  with open(path, encoding="utf-8") as reader:
    record = json.load(reader)
  assert record["steps_per_epoch"] == 2.5
  assert [e["end_step"] for e in record["epochs"]] == [3, 5, 8, 10]


def test_epoch_timing_hook_skips_epochs_it_did_not_see_start(recorded,
                                                             tmp_path):
  lines, clock = recorded
  path = str(tmp_path / "train_timing.json")
  # Resumed at step 4, inside epoch 2 (steps 4-5): epoch 2 is not timed.
  hook = hooks.EpochTimingHook(2.5, 10, path)
  _drive(hook, clock, 4, [(float(s), s + 0.5) for s in range(5, 11)])
  assert lines == ["epoch 3/4: 3.0 s", "epoch 4/4: 2.0 s"]
  # A later session from step 3 (epoch 1's end) times epoch 2 and keeps
  # the epochs recorded before.
  lines.clear()
  _drive(hooks.EpochTimingHook(2.5, 10, path), clock, 3,
         [(100.0, 101.0), (101.0, 103.0)])
  assert lines == ["epoch 2/4: 3.0 s"]
  assert hooks.epoch_seconds(path) == {2: 3.0, 3: 3.0, 4: 2.0}
  assert hooks.epoch_seconds(str(tmp_path / "missing.json")) == {}


def test_epoch_timing_hook_counts_accumulation_micro_batches(recorded,
                                                             tmp_path):
  lines, clock = recorded
  # 2 steps per epoch, 2 session runs per step: an epoch is 4 runs.
  hook = hooks.EpochTimingHook(2.0, 4, str(tmp_path / "t.json"),
                               runs_per_step=2)
  _drive(hook, clock, 0, [(float(run), run + 1.0) for run in range(8)])
  assert lines == ["epoch 1/2: 4.0 s", "epoch 2/2: 4.0 s"]
