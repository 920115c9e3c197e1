"""This project's side of `bench.vs_pytorch`: `train_lib.run` and the export.

  `train`    `train_lib.run(do_train)` with length bucketing (or every batch
             padded to one fixed length); step end times from a hook;
  `predict`  `train_lib.run(do_predict)` on the trained output_dir, from a
             cold start to the prediction files written;
  `latency`  one sentence through the exported SavedModel's serving_default
             in this process (`serving.client.transports.SavedModelTransport`,
             latency thread mode unless the spec's "thread_mode" says
             otherwise), word-pieces included.

Each runs in its own subprocess, started by `bench.vs_pytorch`:

    python -m bench.ours_side --child '{"measure": "train", ...}'

The spec's "ours_config" holds extra `NerConfig` fields (e.g.
``{"use_amp": true}``, ``{"fused_ops": false}``).
"""

# TensorFlow is imported inside the measurements, in the subprocess.
# pylint: disable=import-outside-toplevel

import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from bench import vs_pytorch
from bench.vs_pytorch import BATCH_SIZE
from bench.vs_pytorch import LEARNING_RATE
from bench.vs_pytorch import MAX_SEQ_LENGTH


def _record_step_ends(times: List[float]) -> None:
  """Makes Estimator.train/predict append each session step's end time."""
  import tensorflow as tf
  tf1 = tf.compat.v1

  class StepEnds(tf1.train.SessionRunHook):

    def after_run(self, run_context, run_values):
      times.append(time.perf_counter())

  # Patch the class that defines them (tf.estimator.Estimator inherits).
  base = next(c for c in tf.estimator.Estimator.__mro__ if "train" in
              c.__dict__)
  for method in ("train", "predict"):
    original = base.__dict__[method]

    def with_hook(self, *args, _original=original, hooks=None, **kwargs):
      return _original(self, *args, hooks=list(hooks or []) + [StepEnds()],
                       **kwargs)
    setattr(base, method, with_hook)


def config_for(spec: Dict[str, Any], **fields):
  """The NerConfig of one measurement: the checkpoint, batch 32, full
  fine-tuning, then the spec's "ours_config", then `fields`."""
  from trainer.run import train_lib
  checkpoint = spec["checkpoint_dir"]
  settings = dict(
      output_dir=spec["output_dir"], train_file=spec["train_file"],
      predict_file=spec["test_file"],
      bert_config_file=os.path.join(checkpoint, "bert_config.json"),
      vocab_file=os.path.join(checkpoint, "vocab.txt"),
      init_checkpoint=os.path.join(checkpoint, "bert_model.ckpt"),
      do_lower_case=True, max_seq_length=MAX_SEQ_LENGTH,
      train_batch_size=BATCH_SIZE, predict_batch_size=BATCH_SIZE,
      learning_rate=LEARNING_RATE, freeze_bert=False, bucketing=True,
      save_checkpoints_steps=10**6, keep_checkpoint_max=1)
  settings.update(spec.get("ours_config") or {})
  if spec.get("precision") == "bfloat16":
    settings["use_bf16"] = True  # bfloat16 products, float32 weights
  settings.update(fields)
  return train_lib.NerConfig(**settings)


def train(spec: Dict[str, Any]) -> Dict[str, Any]:
  """`train_lib.run` with bucketing (or one fixed length); steady rates."""
  from trainer.run import train_lib
  times = []
  _record_step_ends(times)
  fields = dict(do_train=True,
                num_train_steps=spec["warmup_steps"] + spec["steps"])
  fixed = spec.get("fixed_length")
  if fixed:  # every batch [32, L]
    fields.update(bucketing=False, max_seq_length=fixed,
                  doc_stride=max(1, fixed // 2))
  train_lib.run(config_for(spec, **fields))
  result = vs_pytorch.train_result(times[spec["warmup_steps"] - 1:])
  if not fixed:
    result["real_pieces_per_second"] = (result["sentences_per_second"] *
                                        _mean_pieces(spec))
  return result


def _mean_pieces(spec: Dict[str, Any]) -> float:
  """Mean word-pieces per training window, [CLS], [SEP] and any document
  context included (from the run's feature sidecars)."""
  from bench import conll2003
  windows, pieces = conll2003.train_feature_sizes(spec["output_dir"])
  return pieces / windows


def predict(spec: Dict[str, Any]) -> Dict[str, Any]:
  """`train_lib.run(do_predict)` on the trained output_dir, cold start."""
  from trainer.run import train_lib
  times = []
  _record_step_ends(times)
  start = time.perf_counter()
  summary = train_lib.run(config_for(spec, do_predict=True))
  # Cold start to files written (merge and writing included).
  return vs_pytorch.predict_result(summary["predict"]["sentences"], start,
                                   time.perf_counter(), times)


def latency(spec: Dict[str, Any]) -> Dict[str, Any]:
  """Exports, loads the SavedModel in process, times single sentences."""
  import numpy as np
  from serving.client import transports
  from serving.server import saved_model_session
  from trainer.features import windows as features_lib
  from trainer import schema
  from trainer.features import tokenization
  from trainer.run import train_lib
  config = config_for(spec, do_export=True, export_dir=os.path.join(
      spec["output_dir"], "latency_export"))
  # The export is float32; bfloat16 serving is the session's rewrite, as
  # TF Serving's --mixed_precision=bfloat16.
  model = transports.SavedModelTransport(
      train_lib.run(config)["export"],
      thread_mode=spec.get("thread_mode", saved_model_session.LATENCY),
      mixed_precision=(saved_model_session.BFLOAT16
                       if spec.get("precision") == "bfloat16" else None))
  tokenizer = tokenization.NerTokenizer(config.vocab_file, True)
  words, _ = vs_pytorch.read_conll(spec["test_file"])
  latencies = []
  for index in range(spec["requests"] + 10):
    start = time.perf_counter()
    windows = features_lib.convert_sentence(
        words[index % len(words)], None, 0, tokenizer, config.max_seq_length,
        config.doc_stride)
    for window in windows:
      model.predict(schema.SERVING_DEFAULT_SIGNATURE, {
          key: np.array([getattr(window, key)], np.int32)
          for key in schema.MODEL_INPUT_KEYS})
    if index >= 10:
      latencies.append((time.perf_counter() - start) * 1000.0)
  model.close()
  return vs_pytorch.latency_result(latencies)


MEASUREMENTS = {"train": train, "predict": predict, "latency": latency}


def main(argv: Optional[Sequence[str]] = None) -> None:
  """`--child SPEC`: one measurement, as `vs_pytorch.launch` starts it."""
  argv = sys.argv[1:] if argv is None else list(argv)
  if len(argv) != 2 or argv[0] != "--child":
    raise SystemExit("usage: python -m bench.ours_side --child SPEC_JSON "
                     "(started by python -m bench.vs_pytorch)")
  vs_pytorch.run_child(json.loads(argv[1]), MEASUREMENTS)


if __name__ == "__main__":
  main()
