"""The cached training input of the frozen recipe: when it applies, and the
input_fn that trains the head on cached encoder features.

The cache itself (its files, building and reading) is
`trainer.features.encoder_cache`; this module decides for a run whether to use
it (`unavailable_reason`) and wires the run's settings, inputs and Estimator to
it (`training_input_fn`), so the features layer never imports the run's config
or the Estimator glue.
"""

from typing import Any, Callable, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from trainer.features import encoder_cache
from trainer.features import input_pipeline
from trainer.run import config as config_lib
from trainer.tf_compat import modeling
from trainer.training import estimator_lib

tf1 = tf.compat.v1


def _global_step(checkpoint: str) -> int:
  return int(tf.train.load_checkpoint(checkpoint).get_tensor(
      tf1.GraphKeys.GLOBAL_STEP))


def bert_matches_init(checkpoint: str, init_checkpoint: str) -> bool:
  """True when every variable of init_checkpoint is unchanged in checkpoint."""
  init = tf.train.load_checkpoint(init_checkpoint)
  trained = tf.train.load_checkpoint(checkpoint)
  names = set(trained.get_variable_to_shape_map())
  return all(np.array_equal(init.get_tensor(name), trained.get_tensor(name))
             for name in init.get_variable_to_shape_map() if name in names)


def unavailable_reason(config: config_lib.NerConfig,
                       estimator: tf.estimator.Estimator,
                       steps: int) -> Optional[str]:
  """Why this run trains through the encoder, or None to use the cache."""
  if not (config.cache_bert_features and config_lib.uses_frozen_recipe(config)):
    return "off (needs --freeze_bert, --init_checkpoint, --cache_bert_features)"
  if isinstance(estimator, tf1.estimator.tpu.TPUEstimator):
    return "not used on the TPUEstimator path"
  if (estimator.config.train_distribute is not None
      or estimator_lib.multi_worker_config()):
    return "not used with distributed training"
  latest = estimator.latest_checkpoint()
  if latest and _global_step(latest) >= steps:
    return f"not needed: {latest} is already at step {steps}"
  if latest and not bert_matches_init(latest, config.init_checkpoint):
    return (f"not used: BERT in {latest} differs from --init_checkpoint "
            f"(an earlier --nofreeze_bert run?)")
  return None


def training_input_fn(config: config_lib.NerConfig, inputs: Any,
                      estimator: tf.estimator.Estimator, steps: int,
                      batch_size: int, summary: dict[str, Any]
                      ) -> Optional[Callable[..., tf.data.Dataset]]:
  """The cached training input_fn (building the cache if needed), or None.

  Args:
    config: the run's settings.
    inputs: `run_inputs.RunInputs` (feature files, model files, vocab).
    estimator: the run's Estimator (device path, checkpoints so far).
    steps: the run's training steps.
    batch_size: windows per session step.
    summary: gets "bert_feature_cache": {path, bytes, windows, words,
      build_seconds, reused, in_memory}.

  Returns:
    None when the cache does not apply (the reason is logged).
  """
  reason = unavailable_reason(config, estimator, steps)
  if reason:
    logging.info("BERT feature cache %s.", reason)
    return None
  path, _ = inputs.features_file("train")
  head = estimator_lib.head_config(config, inputs.tokenizer.vocab)
  cache_dir = config.bert_feature_cache_dir or inputs.cache_dir
  tf.io.gfile.makedirs(cache_dir)
  prefix = encoder_cache.cache_prefix(cache_dir, encoder_cache.cache_key(
      path, config.init_checkpoint, inputs.bert_config_file, head))
  logging.info("Training the head on cached BERT features: the cached mode "
               "runs the encoder once, without dropout (the BERT paper's "
               "feature-based approach); --nocache_bert_features runs it "
               "every step.")
  meta, reused = encoder_cache.load_or_build(prefix, lambda: (
      encoder_cache.build(
          prefix, path,
          modeling.BertConfig.from_json_file(inputs.bert_config_file),
          config.init_checkpoint, head, config.predict_batch_size,
          estimator_lib.session_config(config))))
  in_memory = (meta["bytes"]
               <= config.bert_feature_cache_gb * encoder_cache.BYTES_PER_GB)
  store = encoder_cache.FeatureStore(prefix, in_memory)
  logging.info(
      "%s BERT feature cache %s: %d windows, %d words, %d bytes, read %s "
      "(--bert_feature_cache_gb=%g).", "Reusing" if reused else "Built",
      prefix, meta["num_windows"], meta["num_words"], meta["bytes"],
      "from memory" if in_memory else "from disk",
      config.bert_feature_cache_gb)
  summary["bert_feature_cache"] = {
      "path": prefix, "bytes": meta["bytes"],
      "windows": meta["num_windows"], "words": meta["num_words"],
      "build_seconds": meta["build_seconds"], "reused": reused,
      "in_memory": in_memory}
  boundaries = (input_pipeline.bucket_boundaries_for(
      path, config.bucket_boundaries, config.bucket_length_multiple())
                if config.bucketing else None)
  return encoder_cache.input_fn_builder(store, batch_size, boundaries,
                                       config.seed)
