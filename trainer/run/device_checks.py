"""Checks of the device settings: GPUs, TPUs, bfloat16 (`NerConfig.validate`).

Reads no data; bfloat16 reads /proc/cpuinfo (`cpu_features`) and whether
oneDNN is on in this process.

Example: num_gpus=2, train_batch_size=33 -> UserError("--num_gpus=2:
--train_batch_size=33 must split evenly over the GPUs ...").
"""

from typing import Any

from trainer import cpu_features
from trainer.errors import UserError
from trainer.training import roles


def check(config: Any) -> None:
  """GPU, TPU and bfloat16 settings of a `NerConfig` and their combinations.

  Raises:
    UserError: naming the flag, the value and the fix.
  """
  gpus, accumulation = config.num_gpus, config.gradient_accumulation_steps
  if gpus < 0 or (gpus > 1 and config.train_batch_size % (gpus * accumulation)):
    raise UserError(f"--num_gpus={gpus}: --train_batch_size="
                    f"{config.train_batch_size} must split evenly over the "
                    "GPUs (and --gradient_accumulation_steps).")
  if gpus > 1 and accumulation > 1:
    raise UserError("--gradient_accumulation_steps cannot be combined with "
                    "--num_gpus; raise the per-GPU batch or add GPUs.")
  if config.sparse_embedding_updates and (
      gpus > 1 or accumulation > 1 or config.use_tpu
      or roles.task_role().is_multi_worker):
    raise UserError("--sparse_embedding_updates runs on one device: it "
                    "cannot be combined with --num_gpus, --use_tpu, "
                    "--gradient_accumulation_steps or a multi-worker "
                    "TF_CONFIG.")
  if config.use_bf16:
    _check_bf16(config)
  for name in ("tpu_timeout_seconds", "chief_wait_seconds"):
    if getattr(config, name) < 1:
      raise UserError(f"--{name}={getattr(config, name)} must be at least 1.")
  if not config.use_tpu:
    return
  if not config.tpu_name:
    raise UserError("--use_tpu needs --tpu_name.")
  if gpus > 1 or config.use_amp or accumulation > 1:
    raise UserError("--use_tpu cannot be combined with --num_gpus, --use_amp "
                    "or --gradient_accumulation_steps.")
  for name in ("train_batch_size", "eval_batch_size", "predict_batch_size"):
    if getattr(config, name) % config.num_tpu_cores:
      raise UserError(f"--{name}={getattr(config, name)} must be a multiple "
                      f"of --num_tpu_cores={config.num_tpu_cores}.")


def _check_bf16(config: Any) -> None:
  """--use_bf16: a CPU with native bfloat16 and oneDNN, no GPU/TPU flags."""
  if config.use_amp or config.num_gpus or config.use_tpu:
    raise UserError("--use_bf16 is bfloat16 on CPU; it cannot be combined "
                    "with --use_amp, --num_gpus or --use_tpu (on GPU use "
                    "--use_amp alone).")
  if not config.fused_ops:
    raise UserError("--use_bf16 computes in bfloat16 through the fused dense "
                    "and attention layers (--fused_ops, the default); it "
                    "cannot be combined with --nofused_ops.")
  unsupported = cpu_features.bf16_support_error()
  if unsupported:
    raise UserError(unsupported)
  from trainer.model import fused_ops  # pylint: disable=g-import-not-at-top
  if not fused_ops.onednn_enabled():
    raise UserError("--use_bf16 needs TensorFlow's oneDNN kernels, which are "
                    "off in this process: set TF_ENABLE_ONEDNN_OPTS=1 in the "
                    "environment before starting the run.")
