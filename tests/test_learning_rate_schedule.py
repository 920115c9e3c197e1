"""The learning rate a real training run feeds its optimizer, step by step.

`test_optimization.py` checks `learning_rate_schedule` on its own; this test
reads the rate from the running graph of a real run (the Estimator built by
`estimator_lib.make_estimator` from a `NerConfig`, trained on the tiny
workspace), so it fails when any link from `--warmup_proportion` to the AdamW
kernels breaks: the warmup steps `make_estimator` derives, `model_fn`'s
arguments, `create_train_op`, the schedule, or the optimizer's `lr`.
"""

import numpy as np
import pytest
import tensorflow as tf

from tests.tiny_bert import make_config
from trainer.run import train_lib
from trainer.run.run_inputs import RunInputs
from trainer.training import estimator_lib

tf1 = tf.compat.v1

# The fused AdamW kernels of `optimization.AdamWeightDecayOptimizer`; input 5
# of both is `lr`, the rate the update really uses.
ADAM_KERNELS = ("ResourceApplyAdam", "ApplyAdam")
ADAM_LR_INPUT = 5


class LearningRateRecorder(tf1.train.SessionRunHook):
  """Fetches, at every training step, the `lr` input of the Adam kernels."""

  def __init__(self):
    self.rates = []
    self._rate = None

  def begin(self):
    rates = {op.inputs[ADAM_LR_INPUT].name: op.inputs[ADAM_LR_INPUT]
             for op in tf1.get_default_graph().get_operations()
             if op.type in ADAM_KERNELS}
    # Every trained variable's kernel reads one shared rate tensor.
    assert len(rates) == 1, sorted(rates)
    self._rate = next(iter(rates.values()))

  def before_run(self, run_context):  # pylint: disable=unused-argument
    return tf1.train.SessionRunArgs(self._rate)

  def after_run(self, run_context, run_values):  # pylint: disable=unused-argument
    self.rates.append(float(run_values.results))


def _train_recording_rates(config):
  """Trains `config` as `train_lib.run` does, with a `LearningRateRecorder`."""
  config.validate()
  inputs = RunInputs(config).prepare()
  path, windows = inputs.features_file("train")
  steps = train_lib.num_steps(config, windows)
  estimator = estimator_lib.make_estimator(
      config, inputs.bert_config_file, inputs.labels, inputs.tokenizer.vocab,
      steps)
  recorder = LearningRateRecorder()
  estimator.train(
      train_lib.input_fn_for(config, path, True, config.train_batch_size),
      max_steps=steps, hooks=[recorder])
  return recorder.rates


@pytest.mark.parametrize("warmup_proportion, expected", [
    # 10 steps, int(10 * 0.3) = 3 of them warming up linearly from 0; then
    # BERT's linear decay over all 10 steps: 1 - step / 10 from step 3 on.
    (0.3, [0.0, 1 / 3, 2 / 3, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]),
    # No warmup: the decay alone, from the peak at step 0.
    (0.0, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]),
])
def test_running_graph_warms_up_then_decays(workspace, warmup_proportion,
                                            expected):
  peak = 1e-2
  config = make_config(workspace, do_train=True, num_train_steps=10,
                       learning_rate=peak,
                       warmup_proportion=warmup_proportion)
  rates = _train_recording_rates(config)
  np.testing.assert_allclose(rates, np.array(expected) * peak, rtol=1e-6,
                             atol=1e-12)
