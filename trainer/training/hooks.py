"""Session hooks that log training and eval/predict progress.

`ProgressHook` rides along with training (the `model_fn` adds it);
`BatchProgressHook` is passed to `Estimator.evaluate`/`predict`. Both log at
most every `every_secs` seconds, so a long run's log stays short.
`EpochTimingHook` (passed to `Estimator.train`) logs and records the seconds
of each epoch, so benchmarks can report the cost of an epoch after the first.
"""

import json
import math
import time

from absl import logging
import tensorflow as tf

from trainer import durations

tf1 = tf.compat.v1


class ProgressHook(tf1.train.SessionRunHook):
  """Logs step, loss, steps/s, examples/s and ETA every `every_secs` seconds.

  The first step only starts the clock; the step the run ends at is always
  logged (by `end`).

  Example line: "step 200/1000 (20.0%): loss 0.4321, 4.00 steps/s,
  128.0 examples/s, ETA 0h03m20s".
  """

  def __init__(self, loss: tf.Tensor, total_steps: int, batch_size: int,
               every_secs: float = 15.0):
    """Args: float32 [] loss, steps of the run, examples per step, period."""
    self._loss_tensor = loss
    self._total_steps = total_steps
    self._batch_size = batch_size
    self._every_secs = every_secs

  def begin(self):
    self._global_step = tf1.train.get_global_step()
    self._last_time = None
    self._last_step = None
    self._last_loss = float("nan")

  def before_run(self, run_context):  # pylint: disable=unused-argument
    return tf1.train.SessionRunArgs((self._global_step, self._loss_tensor))

  def after_run(self, run_context, run_values):
    step, loss = run_values.results
    step = int(step)
    now = time.time()
    if self._last_time is None:
      self._last_time, self._last_step = now, step
      return
    self._last_loss = loss
    if now - self._last_time < self._every_secs and step < self._total_steps:
      return
    self._log(step, loss, now)

  def end(self, session):
    """Logs the step the run ended at, which `after_run` cannot see: its
    global step is read in the same run as the update, so the last run
    shows the step before it."""
    if self._last_time is None:
      return
    step = int(session.run(self._global_step))
    if step > self._last_step:
      self._log(step, self._last_loss, time.time())

  def _log(self, step: int, loss: float, now: float) -> None:
    steps_per_sec = (step - self._last_step) / max(now - self._last_time,
                                                   1e-9)
    remaining = max(self._total_steps - step, 0)
    eta = remaining / steps_per_sec if steps_per_sec > 0 else float("inf")
    logging.info("step %d/%d (%.1f%%): loss %.4f, %.2f steps/s, "
                 "%.1f examples/s, ETA %s",
                 step, self._total_steps, 100.0 * step / self._total_steps,
                 loss, steps_per_sec, steps_per_sec * self._batch_size,
                 durations.format_seconds(eta))
    self._last_time, self._last_step = now, step


class BatchProgressHook(tf1.train.SessionRunHook):
  """Logs eval/predict progress (batches done of total) every `every_secs`.

  Example lines: "eval: batch 30/120, 1.0 batches/s, ETA 0h01m30s", and at
  the end "eval: 120 batches in 121.3s".
  """

  def __init__(self, phase: str, total_batches: int, every_secs: float = 30.0):
    """Args: phase name for the log ("eval"), expected batches, period."""
    self._phase = phase
    self._total = total_batches
    self._every_secs = every_secs

  def begin(self):
    self._done = 0
    self._start = self._last = time.time()

  def after_run(self, run_context, run_values):
    self._done += 1
    now = time.time()
    if now - self._last >= self._every_secs:
      rate = self._done / max(now - self._start, 1e-9)
      logging.info("%s: batch %d/%d, %.1f batches/s, ETA %s", self._phase,
                   self._done, self._total, rate,
                   durations.format_seconds(
                       max(self._total - self._done, 0) / rate))
      self._last = now

  def end(self, session):  # pylint: disable=unused-argument
    logging.info("%s: %d batches in %.1fs", self._phase, self._done,
                 time.time() - self._start)


class EpochTimingHook(tf1.train.SessionRunHook):
  """Logs "epoch k/N: X s" per epoch and records the durations to a JSON file.

  Epoch k ends after global step ceil(k * steps_per_epoch); a last partial
  epoch (--num_train_steps) is not timed. An epoch is
  timed when this session saw it start (at step 0, or at the previous
  epoch's end); one that an evaluation or a restart cut in two is not. The
  clock starts at the first step's `before_run`, so graph building and
  session start-up are not counted.

  The file (rewritten after each epoch; epochs of earlier sessions are kept)::

      {"steps_per_epoch": 438.8, "epochs": [{"epoch": 1, "seconds": 91.2,
       "end_step": 439}, {"epoch": 2, "seconds": 12.4, "end_step": 878}]}

  Example: 10 windows, batch 4 -> steps_per_epoch 2.5; epochs end after
  steps 3, 5, 8, 10.
  """

  def __init__(self, steps_per_epoch: float, total_steps: int, path: str,
               runs_per_step: int = 1):
    """Args: global steps per epoch, steps of the run, JSON path, and
    session runs per global step (gradient accumulation micro-batches)."""
    self._steps_per_epoch = steps_per_epoch
    self._total_steps = total_steps
    self._path = path
    self._runs_per_step = runs_per_step
    self._step = 0
    self._runs = 0
    self._epoch_start = None
    self._start_pending = False

  def end_step(self, epoch: int) -> int:
    """The global step after which `epoch` (1-based) ends."""
    return math.ceil(epoch * self._steps_per_epoch - 1e-9)

  def epoch_of(self, step: int) -> int:
    """The epoch (1-based) that global step `step` (1-based) belongs to.

    The first epoch whose `end_step` is at least `step`.
    """
    return max(1, math.floor((step - 1) / self._steps_per_epoch + 1e-9) + 1)

  def after_create_session(self, session, coord):  # pylint: disable=unused-argument
    self._step = int(session.run(tf1.train.get_global_step()))
    self._runs = 0
    epoch = self.epoch_of(self._step + 1)
    # Timed only if this session starts where the epoch starts.
    self._start_pending = self._step in (0, self.end_step(epoch - 1))
    self._epoch_start = None

  def before_run(self, run_context):  # pylint: disable=unused-argument
    if self._start_pending:
      self._epoch_start = time.time()
      self._start_pending = False

  def after_run(self, run_context, run_values):  # pylint: disable=unused-argument
    self._runs += 1
    if self._runs % self._runs_per_step:
      return
    self._step += 1
    epoch = self.epoch_of(self._step)
    if self._step != self.end_step(epoch):
      return
    now = time.time()
    if self._epoch_start is not None:
      seconds = now - self._epoch_start
      logging.info("epoch %d/%d: %.1f s", epoch,
                   self.epoch_of(self._total_steps), seconds)
      self._record(epoch, seconds)
    self._epoch_start = now

  def _record(self, epoch: int, seconds: float) -> None:
    record = {"steps_per_epoch": self._steps_per_epoch, "epochs": []}
    previous = {}
    if tf.io.gfile.exists(self._path):
      try:  # a run killed while writing it (before writes were atomic)
        with tf.io.gfile.GFile(self._path) as reader:
          previous = json.load(reader)
      except ValueError:
        logging.warning("Starting %s afresh: it is not readable JSON.",
                        self._path)
    if previous:
      if previous.get("steps_per_epoch") == self._steps_per_epoch:
        record["epochs"] = [entry for entry in previous.get("epochs", [])
                            if entry["epoch"] != epoch]
    record["epochs"].append({"epoch": epoch, "seconds": round(seconds, 3),
                             "end_step": self._step})
    record["epochs"].sort(key=lambda entry: entry["epoch"])
    # Written aside, then renamed: a run killed here leaves the old file.
    with tf.io.gfile.GFile(self._path + ".tmp", "w") as writer:
      json.dump(record, writer, indent=2)
    tf.io.gfile.rename(self._path + ".tmp", self._path, overwrite=True)


def epoch_seconds(path: str) -> dict[int, float]:
  """{epoch: seconds} recorded by `EpochTimingHook` ({} without the file)."""
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as reader:
    record = json.load(reader)
  return {entry["epoch"]: entry["seconds"] for entry in record["epochs"]}
