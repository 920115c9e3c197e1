"""Where a run executes: session config, strategies, Estimator construction.

`make_estimator` wraps `model_fn.model_fn_builder` in a `tf.estimator.Estimator`
(one device, `MirroredStrategy` over GPUs, or `MultiWorkerMirroredStrategy`
when TF_CONFIG names a cluster) or in a `TPUEstimator` (google-research/bert's
TPU setup). The run phases in `trainer.run.train_lib` call it and never look at
devices themselves.
"""

import dataclasses
import os
from typing import Any, Mapping, Optional, Sequence

from absl import logging
import tensorflow as tf

from trainer.distill import layers as distill_layers
from trainer.distill import loss as distill_loss
from trainer.model import heads as model_lib
from trainer.training import model_fn as model_fn_lib
from trainer.training import roles
from trainer.training import tpu_cluster
from trainer.tf_compat import modeling

from tensorflow.core.protobuf import rewriter_config_pb2  # pylint: disable=g-bad-import-order

tf1 = tf.compat.v1


@dataclasses.dataclass(frozen=True)
class DeviceOverrides:
  """Device settings that no flag sets: they let tests run device code paths.

  `train_lib.run(config, devices=DeviceOverrides(...))` runs the TPU and
  multi-device code on a CPU-only machine; production runs pass nothing.
  """
  # Use the TPUEstimator code path (fixed shapes, padded eval/predict batches,
  # TPUEstimatorSpec) without a TPU. --use_tpu implies it.
  tpu_estimator: bool = False
  # Devices to mirror training over, e.g. ("/cpu:0", "/cpu:1"); default: the
  # first --num_gpus GPUs when --num_gpus > 1, else one device.
  distribution_devices: Optional[Sequence[str]] = None


NO_OVERRIDES = DeviceOverrides()


def uses_tpu_estimator(config: Any, devices: DeviceOverrides = NO_OVERRIDES
                       ) -> bool:
  """True when the run builds a TPUEstimator (on a TPU or, in tests, not)."""
  return config.use_tpu or devices.tpu_estimator


def distribution_devices(config: Any,
                         devices: DeviceOverrides = NO_OVERRIDES
                         ) -> Optional[list[str]]:
  """Devices to mirror training over, or None for a single device.

  Example: num_gpus=2 -> ["/gpu:0", "/gpu:1"]; num_gpus=1 -> None.
  """
  if devices.distribution_devices:
    return list(devices.distribution_devices)
  if config.num_gpus > 1:
    return [f"/gpu:{index}" for index in range(config.num_gpus)]
  return None


def _count_cpus(devices: Sequence[str]) -> int:
  return sum(1 for device in devices if "cpu" in device.lower())


def _ensure_logical_cpus(devices: Sequence[str]) -> None:
  """Splits the CPU into as many logical devices as `devices` names."""
  cpus = _count_cpus(devices)
  if cpus < 2:
    return
  physical = tf.config.list_physical_devices("CPU")
  configured = tf.config.get_logical_device_configuration(physical[0])
  if configured and len(configured) >= cpus:
    return
  try:
    tf.config.set_logical_device_configuration(
        physical[0], [tf.config.LogicalDeviceConfiguration()] * cpus)
  except RuntimeError as error:
    raise ValueError(
        f"Cannot mirror over {cpus} CPU devices: TensorFlow was already "
        f"initialised with one ({error}). Configure the devices at process "
        "start.") from None


def session_config(config: Any, devices: DeviceOverrides = NO_OVERRIDES
                   ) -> tf1.ConfigProto:
  """ConfigProto with XLA auto-clustering and/or float16 graph rewrite."""
  proto = tf1.ConfigProto(allow_soft_placement=True)
  cpus = _count_cpus(distribution_devices(config, devices) or [])
  if cpus > 1:
    # Logical CPU devices (tests); replicas wait on each other in all-reduce,
    # so the session needs more inter-op threads than replicas or it can
    # deadlock on a 2-core machine.
    proto.device_count["CPU"] = cpus
    proto.inter_op_parallelism_threads = 8
  if config.use_xla:
    proto.graph_options.optimizer_options.global_jit_level = (
        tf1.OptimizerOptions.ON_1)
  if config.use_amp:
    # Grappler's auto mixed precision: MatMul/BatchMatMul in float16 on GPU,
    # numerically sensitive ops (Softmax, Exp, Log, reductions: the softmax
    # loss and the CRF) stay float32. It does nothing on CPU.
    proto.graph_options.rewrite_options.auto_mixed_precision = (
        rewriter_config_pb2.RewriterConfig.ON)
  return proto


def multi_worker_config() -> Optional[dict[str, Any]]:
  """The parsed TF_CONFIG when it describes 2+ training workers, else None.

  Example: TF_CONFIG='{"cluster": {"worker": ["a:1", "b:2"]}, ...}' -> that
  dict; unset, or one worker -> None.
  """
  tf_config = roles.parse_tf_config(os.environ.get(roles.TF_CONFIG_ENV))
  return tf_config if roles.task_role(tf_config).is_multi_worker else None


def make_strategy(config: Any, devices: DeviceOverrides = NO_OVERRIDES
                  ) -> Optional[tf.distribute.Strategy]:
  """The distribution strategy of the run, or None for one device.

  Must run before anything starts the TensorFlow runtime: logical CPU
  devices and multi-worker collectives are configured at startup.
  """
  if multi_worker_config():
    logging.info("TF_CONFIG describes a multi-worker cluster: "
                 "MultiWorkerMirroredStrategy.")
    return tf.distribute.experimental.MultiWorkerMirroredStrategy()
  mirrored = distribution_devices(config, devices)
  if not mirrored:
    return None
  _ensure_logical_cpus(mirrored)
  logging.info("Training on %d replicas (%s); global batch %d, %d per "
               "replica.", len(mirrored), ", ".join(mirrored),
               config.train_batch_size,
               config.train_batch_size // len(mirrored))
  return tf.distribute.MirroredStrategy(devices=mirrored)


def head_config(config: Any, vocab: Mapping[str, int]) -> model_lib.HeadConfig:
  """`model.HeadConfig` of a run (vocab: piece -> id of the run's vocab)."""
  return model_lib.HeadConfig(
      kind=config.head, dropout=config.head_dropout,
      lstm_units=config.lstm_units, lstm_layers=config.lstm_layers,
      crf_constrain_bio=config.crf_constrain_bio,
      continuation_ids=model_lib.continuation_ids_from_vocab(vocab),
      bert_layers=tuple(config.bert_layers),
      layer_combination=config.layer_combination)


def student_layers(config: Any) -> Optional[list[int]]:
  """The checkpoint layer each student layer starts from, or None.

  Only what training restores: None without --student_layers or without
  --init_checkpoint (a from-scratch student starts at random). The source
  model is --bert_config_file (the run builds the student from
  `<output_dir>/student_bert_config.json`, see `run_inputs.RunInputs`).

  Example: --student_layers 3 on a 6-layer --bert_config_file -> [0, 1, 2]
  ([1, 3, 5] with --student_layer_choice even).
  """
  if not (config.student_layers and config.init_checkpoint):
    return None
  source = modeling.BertConfig.from_json_file(config.bert_config_file)
  return distill_layers.resolve_student_layers(
      config.student_layers, source.num_hidden_layers,
      config.bert_config_file, config.student_layer_choice)


def distill_settings(config: Any) -> Optional[distill_loss.DistillSettings]:
  """--distill_alpha and --distill_temperature with --teacher_dir, else None."""
  if not config.teacher_dir:
    return None
  return distill_loss.DistillSettings(config.distill_alpha,
                                      config.distill_temperature)


def resolve_tpu(config: Any) -> Any:
  """The checked `TPUClusterResolver` of a --use_tpu run (`tpu_cluster`).

  Raises:
    UserError: within about --tpu_timeout_seconds per step when the TPU
      cannot be found, does not answer or has too few cores.
  """
  return tpu_cluster.resolve(config.tpu_name, config.tpu_zone,
                             config.gcp_project, config.num_tpu_cores,
                             config.tpu_timeout_seconds)


def _tpu_estimator(config: Any, model_fn: Any, cluster: Any = None
                   ) -> tf1.estimator.tpu.TPUEstimator:
  """TPUEstimator (google-research/bert's TPU setup); runs without a TPU too.

  `cluster`: from `resolve_tpu` (resolved here when None and --use_tpu).
  """
  if config.use_tpu and cluster is None:
    cluster = resolve_tpu(config)
  run_config = tf1.estimator.tpu.RunConfig(
      cluster=cluster, model_dir=config.output_dir,
      tf_random_seed=config.seed,
      save_checkpoints_steps=config.save_checkpoints_steps,
      keep_checkpoint_max=config.keep_checkpoint_max,
      tpu_config=tf1.estimator.tpu.TPUConfig(
          iterations_per_loop=config.iterations_per_loop,
          num_shards=config.num_tpu_cores,
          per_host_input_for_training=(
              tf1.estimator.tpu.InputPipelineConfig.PER_HOST_V2)))
  return tf1.estimator.tpu.TPUEstimator(
      use_tpu=config.use_tpu, model_fn=model_fn, config=run_config,
      train_batch_size=config.train_batch_size,
      eval_batch_size=config.eval_batch_size,
      predict_batch_size=config.predict_batch_size,
      params={"train_batch_size": config.train_batch_size},
      export_to_tpu=False)


def make_estimator(config: Any, bert_config_file: str, labels: Sequence[str],
                   vocab: Mapping[str, int], num_train_steps: int,
                   strategy: Optional[tf.distribute.Strategy] = None,
                   devices: DeviceOverrides = NO_OVERRIDES,
                   tpu: Any = None) -> tf.estimator.Estimator:
  """An Estimator over `model_fn.model_fn_builder` checkpointing to output_dir.

  Args:
    config: the run's `train_lib.NerConfig`.
    bert_config_file: bert_config.json of the model.
    labels: label names; id i is `labels[i]`.
    vocab: piece -> id of the model's vocab (for the CRF word starts).
    num_train_steps: total training steps (the schedule's length).
    strategy: from `make_strategy`, or None for one device.
    devices: test-only device overrides.
    tpu: the run's `resolve_tpu` result with --use_tpu (None: resolved here).

  Returns:
    A `tf.estimator.Estimator`, or a `TPUEstimator` on the TPU code path.
  """
  tpu_path = uses_tpu_estimator(config, devices)
  model_fn = model_fn_lib.model_fn_builder(
      bert_config=modeling.BertConfig.from_json_file(bert_config_file),
      label_names=list(labels),
      init_checkpoint=config.init_checkpoint,
      learning_rate=config.learning_rate,
      num_train_steps=num_train_steps,
      num_warmup_steps=int(num_train_steps * config.warmup_proportion),
      freeze_bert=config.freeze_bert,
      head=head_config(config, vocab),
      use_amp=config.use_amp,
      accumulation_steps=config.gradient_accumulation_steps,
      sparse_embedding_updates=config.sparse_embedding_updates,
      tpu_estimator=tpu_path, use_tpu=config.use_tpu,
      num_tpu_shards=config.num_tpu_cores if config.use_tpu else 1,
      student_layers=student_layers(config),
      distill=distill_settings(config),
      # bfloat16 eval/predict: weights folded into bfloat16 constants once.
      constant_weights=config.use_bf16)
  if tpu_path:
    return _tpu_estimator(config, model_fn, tpu)
  run_config = tf.estimator.RunConfig(
      model_dir=config.output_dir,
      train_distribute=strategy,
      session_config=session_config(config, devices),
      tf_random_seed=config.seed,
      save_checkpoints_steps=config.save_checkpoints_steps,
      keep_checkpoint_max=config.keep_checkpoint_max,
      log_step_count_steps=max(config.save_checkpoints_steps, 100))
  return tf.estimator.Estimator(
      model_fn=model_fn, config=run_config,
      params={"train_batch_size": config.train_batch_size})
