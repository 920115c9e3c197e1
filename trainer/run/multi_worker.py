"""Several workers, one --output_dir: the chief writes, the others wait.

Every worker of a multi-worker job (TF_CONFIG, `trainer.training.roles`)
runs the same command on one shared --output_dir. Only the chief prepares
the run's inputs there (vocab.txt and bert_config.json of a from-scratch
model, labels.txt, run_config.json, the training feature cache); it then
publishes what it prepared in `<output_dir>/cache/chief_inputs.json`
(written atomically, removed when a new job's chief starts):

    {"settings": {...the run's NerConfig...},
     "train_data": {"path": "data/train.txt", "sha256": "..."},
     "labels": ["O", "B-PER", ...],
     "train_features": "out/cache/train-<key>.tf_record",
     "train_windows": 1234,
     "written_by": "worker 0 of 2"}

The other workers wait for that file (`wait_for_chief`, up to
--chief_wait_seconds) and train from the chief's files without writing any
(`WorkerInputs`). A file left by an earlier job is only accepted when its
settings and training data are this job's, i.e. when it names the very
files this job's chief writes.
"""

import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Optional

from absl import logging
import tensorflow as tf

from trainer import schema
from trainer.errors import UserError
from trainer.features import input_pipeline
from trainer.features import tokenization
from trainer.run import config as config_lib
from trainer.run import run_inputs
from trainer.training import roles

CHIEF_INPUTS_FILENAME = schema.CHIEF_INPUTS_FILENAME
POLL_SECONDS = 0.5


def check_flags(config: config_lib.NerConfig, role: roles.TaskRole) -> None:
  """Refuses the flags a multi-worker job cannot honour.

  Raises:
    UserError: for --eval_every_steps with --do_train --do_eval: the workers
      train as one job to the last step, so only the chief's final
      evaluation would happen.
  """
  if not role.is_multi_worker:
    return
  if config.do_train and config.do_eval and config.eval_every_steps:
    raise UserError(
        f"--eval_every_steps={config.eval_every_steps} does not work with "
        f"multi-worker training (TF_CONFIG names {role.num_workers} workers; "
        f"this is {role.describe()}): the workers train together to the last "
        "step and the chief evaluates once after training. Drop "
        "--eval_every_steps, or train in one process.")


def chief_inputs_path(config: config_lib.NerConfig) -> str:
  """`<output_dir>/cache/chief_inputs.json`."""
  return os.path.join(config.output_dir, schema.CACHE_DIRNAME,
                      CHIEF_INPUTS_FILENAME)


def _settings(config: config_lib.NerConfig) -> dict[str, Any]:
  """The config as JSON values (what every worker's flags must equal)."""
  return json.loads(json.dumps(dataclasses.asdict(config), sort_keys=True,
                               default=str))


def _file_sha256(path: str) -> str:
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as reader:
    for block in iter(lambda: reader.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _train_data(config: config_lib.NerConfig) -> dict[str, Optional[str]]:
  path = run_inputs.resolve_data_files(config)["train"]
  return {"path": path, "sha256": _file_sha256(path) if path else None}


def withdraw(config: config_lib.NerConfig) -> None:
  """The chief, at start: removes an earlier job's chief_inputs.json."""
  path = chief_inputs_path(config)
  if tf.io.gfile.exists(path):
    tf.io.gfile.remove(path)


def publish(config: config_lib.NerConfig, inputs: run_inputs.RunInputs,
            role: roles.TaskRole) -> str:
  """The chief, once its inputs are written: tells the other workers.

  Returns:
    The path of chief_inputs.json (written atomically).
  """
  train_features, windows = inputs.features_file("train")
  record = {"settings": _settings(config), "train_data": _train_data(config),
            "labels": list(inputs.labels), "train_features": train_features,
            "train_windows": windows, "written_by": role.describe()}
  path = chief_inputs_path(config)
  tmp_path = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(tmp_path, "w") as writer:
    json.dump(record, writer, indent=2, sort_keys=True)
  tf.io.gfile.rename(tmp_path, path, overwrite=True)
  logging.info("%s: shared inputs ready for the other workers (%s).",
               role.describe(), path)
  return path


def _first_difference(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
  """"--seed=2 here, 1 on the chief" for the first differing setting."""
  for name in sorted(set(ours) | set(theirs)):
    if ours.get(name) != theirs.get(name):
      return (f"--{name}={ours.get(name)} here, {theirs.get(name)} on the "
              "chief")
  return "none"


def _read_record(path: str) -> Optional[dict[str, Any]]:
  """The chief's record, or None while it is absent or being replaced."""
  try:
    with tf.io.gfile.GFile(path) as reader:
      return json.load(reader)
  except (tf.errors.NotFoundError, json.JSONDecodeError):
    return None


def wait_for_chief(config: config_lib.NerConfig,
                   role: roles.TaskRole) -> "WorkerInputs":
  """A non-chief worker: waits for the chief's inputs, then reads them.

  Polls chief_inputs.json until it describes this job (same settings, same
  training data) and names a complete training feature file.

  Raises:
    UserError: after --chief_wait_seconds without such a file, naming the
      file and what was missing or different.
  """
  path = chief_inputs_path(config)
  settings, train_data = _settings(config), _train_data(config)
  logging.info("%s: waiting up to %d s for the chief's shared inputs (%s).",
               role.describe(), config.chief_wait_seconds, path)
  deadline = time.monotonic() + config.chief_wait_seconds
  problem = "it does not exist yet"
  while True:
    record = _read_record(path)
    if record is not None:
      if record.get("settings") != settings:
        problem = ("it was written for other settings ("
                   f"{_first_difference(settings, record.get('settings', {}))}"
                   "); give every worker the same flags")
      elif record.get("train_data") != train_data:
        problem = (f"it was written for other training data than "
                   f"{train_data['path']} (the file changed?)")
      elif (input_pipeline.read_feature_count(record["train_features"])
            != record["train_windows"]):
        problem = f"its training features {record['train_features']} are " \
                  "missing or incomplete"
      else:
        logging.info("%s: training from the chief's inputs (%s, %d windows).",
                     role.describe(), record["train_features"],
                     record["train_windows"])
        return WorkerInputs(config, record)
    if time.monotonic() >= deadline:
      raise UserError(
          f"{role.describe()} waited {config.chief_wait_seconds} s "
          f"(--chief_wait_seconds) for the chief's shared inputs {path}, "
          f"but {problem}. Start the chief (TF_CONFIG task \"chief\", or "
          "worker 0 without one) with the same flags and the same "
          "--output_dir, a folder every worker can read; see its log for "
          "errors.")
    time.sleep(POLL_SECONDS)


def remove_worker_scratch(config: config_lib.NerConfig,
                          role: roles.TaskRole) -> None:
  """A non-chief worker, after training: removes its scratch checkpoints.

  Under MultiWorkerMirroredStrategy every worker takes part in saving, and
  TensorFlow points a non-chief worker's saver and summaries at
  `<output_dir>/tmp_<type>_<index>` (a full copy of the model per worker,
  and a TensorBoard run of its own); the chief's checkpoints are the run's.
  """
  path = os.path.join(config.output_dir,
                      f"tmp_{role.task_type}_{role.task_index}")
  if not role.is_chief and tf.io.gfile.isdir(path):
    tf.io.gfile.rmtree(path)
    logging.info("%s: removed its scratch checkpoints %s.", role.describe(),
                 path)


class WorkerInputs(run_inputs.RunInputs):
  """A non-chief worker's inputs: the chief's files, read, never written.

  Holds what training needs (labels, tokenizer, model files and the
  training features the chief built); `prepare()` and the other splits'
  features belong to the chief.
  """

  def __init__(self, config: config_lib.NerConfig, record: dict[str, Any]):
    super().__init__(config)
    self.labels = list(record["labels"])
    self.tokenizer = tokenization.NerTokenizer(self.vocab_file,
                                               config.do_lower_case)
    self._train_features = (record["train_features"],
                            int(record["train_windows"]))

  def prepare(self) -> "WorkerInputs":
    raise AssertionError("Only the chief prepares a multi-worker job's "
                         "inputs; other workers read them (wait_for_chief).")

  def features_file(self, split: str) -> tuple[str, int]:
    if split != "train":
      raise AssertionError(f"A non-chief worker trains only; the chief "
                           f"reads the {split} split.")
    return self._train_features
