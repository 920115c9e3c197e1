"""Checks of the distillation settings; reads no files, imports no TensorFlow.

`check(config)` is called by `NerConfig.validate`. The settings:

  --teacher_dir DIR           a finished run's --output_dir: its latest
                              checkpoint tags the training windows once
                              (`trainer.distill.teacher`) and the student
                              learns from those distributions.
  --student_layers K|i,j,...  a student with K encoder layers of the source
                              model's (its first K, or spread evenly with
                              --student_layer_choice even; or the listed
                              0-based layer indices), initialised from them.
  --distill_alpha A           loss = A * gold loss + (1 - A) * T^2 * KL.
  --distill_temperature T     softens both distributions in the KL term.
  --distill_unlabelled_file F sentences without tags (text or JSON lines)
                              the student learns from the teacher alone.

Example: student_layers "3" -> ok; "1,3,5" -> ok; "5,3" -> UserError
("... strictly ascending ...").
"""

from typing import Any, Optional

from trainer.errors import UserError

# How a --student_layers count picks the source's layers: its first K, or K
# spread evenly keeping the last (trainer.distill.layers).
LAYER_CHOICES = ("bottom", "even")
DEFAULT_ALPHA = 0.5
DEFAULT_TEMPERATURE = 2.0


def parse_layer_spec(value: Optional[str]) -> Optional[tuple[str, list[int]]]:
  """--student_layers -> ("count", [K]) or ("indices", [i, j, ...]) or None.

  Example: "3" -> ("count", [3]); "1,3,5" -> ("indices", [1, 3, 5]);
  "" or None -> None.

  Raises:
    UserError: for anything but a positive count or strictly ascending
      non-negative indices.
  """
  if value is None or not str(value).strip():
    return None
  text = str(value).strip()
  parts = [part.strip() for part in text.split(",")]
  try:
    numbers = [int(part) for part in parts]
  except ValueError:
    raise UserError(
        f"--student_layers={text} must be a layer count such as 3 or "
        "comma-separated 0-based layer indices such as 1,3,5.") from None
  if len(numbers) == 1 and "," not in text:
    if numbers[0] < 1:
      raise UserError(f"--student_layers={text} must be a count >= 1 "
                      "(or layer indices such as 1,3,5).")
    return "count", numbers
  if numbers[0] < 0 or any(b <= a for a, b in zip(numbers, numbers[1:])):
    raise UserError(f"--student_layers={text}: layer indices must be 0-based "
                    "and strictly ascending, e.g. 1,3,5.")
  return "indices", numbers


def check(config: Any) -> None:
  """Checks the distillation fields of a `NerConfig` and their combinations.

  Raises:
    UserError: naming the flag, the value and the fix.
  """
  parse_layer_spec(config.student_layers)
  if config.student_layer_choice not in LAYER_CHOICES:
    raise UserError(f"--student_layer_choice={config.student_layer_choice!r} "
                    f"is not one of {', '.join(LAYER_CHOICES)}.")
  if not 0.0 <= config.distill_alpha <= 1.0:
    raise UserError(f"--distill_alpha={config.distill_alpha} must be in "
                    "[0, 1] (the gold loss's weight; 1 - alpha weighs the "
                    "teacher's).")
  if not config.distill_temperature > 0.0:
    raise UserError(f"--distill_temperature={config.distill_temperature} "
                    "must be > 0 (1 keeps the distributions, 2 softens them).")
  if config.distill_unlabelled_file and not config.teacher_dir:
    raise UserError("--distill_unlabelled_file needs --teacher_dir: "
                    "sentences without tags are learnt from a teacher.")
  for flag in ("teacher_dir", "student_layers"):
    if getattr(config, flag) and config.freeze_bert and config.do_train:
      raise UserError(
          f"--{flag} trains the student's encoder, but --freeze_bert (the "
          "default) trains only the head. Add --nofreeze_bert.")
  if config.teacher_dir and config.use_tpu:
    raise UserError("--teacher_dir is not supported with --use_tpu yet; "
                    "distil on CPU or GPU.")
