"""A student's training input: the teacher's targets over its windows.

With --teacher_dir, `trainer.run.train_lib.train` reads the teacher-targets
file (`trainer.distill.teacher.targets_file`: the training feature file's
records plus `teacher_log_probs`) instead of the feature file, with the same
bucketing, shuffling and padding, and `model_fn` adds the KL term
(`trainer.distill.loss`). Eval, predict and export never read the teacher.

    targets = teacher_targets(config, inputs, features_path, estimator)
    # -> TeacherTargets(path=".../cache/teacher-<key>.tfrecord", num_labels=9)
"""

from typing import Any, NamedTuple, Optional

from absl import logging
import tensorflow as tf

from trainer.distill import teacher as teacher_lib


class TeacherTargets(NamedTuple):
  """The file a student trains on.

  Attributes:
    path: the teacher-targets TFRecord (the training windows, in order, each
      with `schema.TEACHER_LOG_PROBS`).
    num_labels: L, the labels of its float16 [n, L] log-probabilities.
  """
  path: str
  num_labels: int


def teacher_targets(config: Any, inputs: Any, features_path: str,
                    estimator: Optional[tf.estimator.Estimator] = None
                    ) -> Optional[TeacherTargets]:
  """Builds or reuses the teacher targets of the training windows.

  Args:
    config: the run's `NerConfig` (teacher_dir, distill_alpha,
      distill_temperature).
    inputs: the run's prepared `RunInputs` (labels, vocab_file, cache_dir).
    features_path: the training feature file (`inputs.features_file`).
    estimator: the run's Estimator: the teacher runs with its session
      settings (None: TensorFlow's defaults).

  Returns:
    None without --teacher_dir.

  Raises:
    UserError: for a teacher folder that is no finished run, or a teacher
      whose labels or vocab differ from the student's (naming the fix,
      e.g. --labels_file <teacher_dir>/labels.txt).
  """
  if not config.teacher_dir:
    return None
  teacher = teacher_lib.TeacherRun.load(config.teacher_dir)
  path, windows = teacher_lib.targets_file(
      teacher, features_path, inputs.cache_dir, inputs.labels,
      inputs.vocab_file, session_config=(
          estimator.config.session_config if estimator else None))
  logging.info("Distilling from %s (checkpoint %s, alpha %g, T %g): teacher "
               "targets of %d windows in %s", config.teacher_dir,
               teacher.checkpoint, config.distill_alpha,
               config.distill_temperature, windows, path)
  return TeacherTargets(path, len(inputs.labels))
