"""Which task of a job does what, decided from TF_CONFIG itself.

Every worker of a multi-worker job runs the same command on one shared
--output_dir. Exactly one task, the chief, writes the folder's shared files
(vocab.txt, labels.txt, run_config.json, the training feature cache, the
output-folder lock), evaluates, predicts, exports and writes the results and
report; the others train and then stop.

The chief is TF_CONFIG's `chief` task, or `worker` 0 when the cluster has no
`chief` entry (TensorFlow's own rule, `multi_worker_util.is_chief`). The
decision is read from TF_CONFIG, not from the Estimator's RunConfig: under
MultiWorkerMirroredStrategy TensorFlow rebuilds RunConfig so that every
worker reports `is_chief: True`.

    role = task_role()        # reads os.environ["TF_CONFIG"]
    if role.is_chief: ...write shared files...

Examples (TF_CONFIG -> role):
    unset                                               -> single process, chief
    {"cluster": {"worker": [a, b]},
     "task": {"type": "worker", "index": 0}}            -> worker 0 of 2, chief
    same cluster, "index": 1                            -> worker 1 of 2
    {"cluster": {"chief": [a], "worker": [b]},
     "task": {"type": "worker", "index": 0}}            -> worker 0 of 2

Pure Python (no TensorFlow import).
"""

import dataclasses
import json
import os
from typing import Any, Mapping, Optional, Union

from trainer.errors import UserError

TF_CONFIG_ENV = "TF_CONFIG"
# Task types that train (MultiWorkerMirroredStrategy's workers).
TRAINING_TASK_TYPES = ("chief", "worker")


@dataclasses.dataclass(frozen=True)
class TaskRole:
  """This process's place in the job.

  Attributes:
    task_type: TF_CONFIG's task type ("chief", "worker", "evaluator", ...),
      "" for a single process.
    task_index: TF_CONFIG's task index (0 for a single process).
    num_workers: training tasks in the cluster (chief + workers), 1 for a
      single process.
    is_chief: this task writes the shared files, evaluates, predicts and
      exports.
  """
  task_type: str = ""
  task_index: int = 0
  num_workers: int = 1
  is_chief: bool = True

  @property
  def is_multi_worker(self) -> bool:
    """True when 2+ tasks train together (MultiWorkerMirroredStrategy)."""
    return self.num_workers > 1

  def describe(self) -> str:
    """"worker 1 of 2", "chief of 3" or "single process"."""
    if not self.is_multi_worker:
      return "single process"
    name = (self.task_type if self.task_type == "chief"
            else f"{self.task_type} {self.task_index}")
    return f"{name} of {self.num_workers}"


SINGLE_PROCESS = TaskRole()


def parse_tf_config(value: Optional[str]) -> dict[str, Any]:
  """The TF_CONFIG dict ({} when unset or empty).

  Raises:
    UserError: when it is not a JSON object, naming the value.
  """
  if not value or not value.strip():
    return {}
  try:
    parsed = json.loads(value)
  except json.JSONDecodeError as error:
    raise UserError(f"{TF_CONFIG_ENV}={value!r} is not valid JSON ({error}); "
                    "expected e.g. {\"cluster\": {\"worker\": [\"host1:12345\", "
                    "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", "
                    "\"index\": 0}}.") from None
  if not isinstance(parsed, dict):
    raise UserError(f"{TF_CONFIG_ENV}={value!r} is not a JSON object with "
                    "\"cluster\" and \"task\".")
  return parsed


def task_role(tf_config: Union[None, str, Mapping[str, Any]] = None
              ) -> TaskRole:
  """This task's role, from TF_CONFIG (default: os.environ["TF_CONFIG"]).

  Args:
    tf_config: TF_CONFIG as a JSON string or a parsed dict; None reads the
      environment.

  Returns:
    `SINGLE_PROCESS` when the cluster has fewer than two training tasks,
    else the task's `TaskRole`.

  Raises:
    UserError: for a TF_CONFIG that is not JSON, or a multi-worker cluster
      whose "task" is missing or names a task the cluster does not list.
  """
  if tf_config is None:
    tf_config = os.environ.get(TF_CONFIG_ENV)
  if not isinstance(tf_config, Mapping):
    tf_config = parse_tf_config(tf_config)
  cluster = tf_config.get("cluster") or {}
  num_workers = sum(len(cluster.get(kind) or ())
                    for kind in TRAINING_TASK_TYPES)
  if num_workers < 2:
    return SINGLE_PROCESS
  task = tf_config.get("task") or {}
  task_type, task_index = task.get("type"), task.get("index", 0)
  listed = len(cluster.get(task_type) or ()) if task_type else 0
  if not isinstance(task_index, int) or not 0 <= task_index < listed:
    raise UserError(
        f"{TF_CONFIG_ENV} names task {json.dumps(task)} but its cluster lists "
        f"{json.dumps({k: len(v) for k, v in cluster.items()})} tasks; set "
        "\"task\": {\"type\": \"worker\", \"index\": i} with i below the "
        "number of workers (each worker its own index).")
  is_chief = (task_type == "chief"
              or (task_type == "worker" and task_index == 0
                  and not cluster.get("chief")))
  return TaskRole(task_type=task_type, task_index=task_index,
                  num_workers=num_workers, is_chief=is_chief)
