"""The run manifest: what a model in --output_dir was trained with.

A model only means something with the files it was trained with: labels.txt
gives the meaning of each output, vocab.txt and bert_config.json the meaning
of each input. Edit one after training and the export still succeeds, and
the served model calls 张三 LOC. So training writes, atomically, before its
first step, `<output_dir>/run_manifest.json`:

    {"format": 1, "written": "2026-12-07T13:30:00Z",
     "labels": ["O", "B-PER", ...],
     "files": {"labels": {"path": ".../labels.txt", "sha256": "..."},
               "vocab": {...}, "bert_config": {...}},
     "train_data": [{"path": ".../train.txt", "sha256": "..."}],
     "model_settings": {"do_lower_case": true, "head": "softmax", ...},
     "settings": {<every NerConfig field>}}

plus, for a --student_layers student (whose "bert_config" entry is
<output_dir>/student_bert_config.json), "student": {"layers": [1, 3, 5],
"source_layers": 6, "source_bert_config": {"path": ..., "sha256": ...}}.

Every later phase on a trained folder (--do_eval, --do_predict, --do_export,
a resumed --do_train) checks what it reads against it, before it writes
anything (`RunInputs.prepare` calls `check`):

- labels.txt in the folder, and the labels the run uses (--labels_file or
  the training data's), must be the trained list, in the trained order;
- vocab.txt and bert_config.json must have the recorded SHA-256 (wherever
  they are now: contents, not paths);
- the model settings (`MODEL_SETTINGS`) must be equal;
- a resumed --do_train must read the same training data;
- --student_layers must be the trained value (`check_student_layers`, run
  before the student's config is written again).

A mismatch is one `UserError` naming the file, what changed and what to do.
Folders trained before manifests existed are used unchecked (a warning says
so) and get a manifest when training resumes. The export copies the
manifest into the SavedModel's assets/.
"""

import dataclasses
import datetime
import hashlib
import json
import os
from typing import Any, Optional, Sequence

from absl import logging
import tensorflow as tf

from trainer import gfile_io
from trainer import schema
from trainer.data import labels as labels_lib
from trainer.data.formats import parallel_reader
from trainer.errors import UserError
from trainer.features import cache_files

MANIFEST_FILENAME = schema.RUN_MANIFEST_FILENAME
FORMAT = 1
# NerConfig fields a trained model depends on: evaluating or exporting it
# with other values would build another model or read text another way.
# (Dropout, batch sizes, learning rates, ... only shape training.)
MODEL_SETTINGS = ("do_lower_case", "head", "lstm_units", "lstm_layers",
                  "bert_layers", "layer_combination")
# NerConfig fields that decide which optimizer variables the checkpoints
# hold (sparse embedding updates add a slot): resuming needs the same.
OPTIMIZER_SETTINGS = ("sparse_embedding_updates",)
# Labels shown in a message before "...".
_SHOWN = 12


def manifest_path(output_dir: str) -> str:
  """`<output_dir>/run_manifest.json`."""
  return os.path.join(output_dir, MANIFEST_FILENAME)


def labels_sha256(labels: Sequence[str]) -> str:
  """SHA-256 of labels.txt as the trainer writes it (one label a line)."""
  return hashlib.sha256("".join(f"{label}\n" for label in labels)
                        .encode("utf-8")).hexdigest()


def _entry(path: str) -> dict[str, str]:
  return {"path": path, "sha256": cache_files.file_sha256(path)}


def train_data_files(inputs: Any) -> list[str]:
  """The training data files of a run: the file and its parallel partner."""
  path = inputs.files.get("train")
  if not path:
    return []
  partner = parallel_reader.parallel_partner(path)
  return [path] + ([partner] if partner and tf.io.gfile.exists(partner)
                   else [])


def build(config: Any, inputs: Any) -> dict[str, Any]:
  """The manifest of a run about to train (`inputs`: prepared `RunInputs`)."""
  built = {
      "format": FORMAT,
      "written": datetime.datetime.now(datetime.timezone.utc).strftime(
          "%Y-%m-%dT%H:%M:%SZ"),
      "labels": list(inputs.labels),
      "files": {"labels": {"path": inputs.labels_file,
                           "sha256": labels_sha256(inputs.labels)},
                "vocab": _entry(inputs.vocab_file),
                "bert_config": _entry(inputs.bert_config_file)},
      "train_data": [_entry(path) for path in train_data_files(inputs)],
      "model_settings": {key: getattr(config, key) for key in MODEL_SETTINGS},
      "settings": json.loads(json.dumps(dataclasses.asdict(config),
                                        default=str)),
  }
  if getattr(inputs, "student_layers", None) is not None:
    built["student"] = {
        "layers": list(inputs.student_layers),
        "source_layers": inputs.source_layers,
        "source_bert_config": _entry(inputs.source_bert_config_file)}
  return built


def write(config: Any, inputs: Any) -> str:
  """Writes the manifest atomically (temporary file, then rename)."""
  path = manifest_path(config.output_dir)
  temporary = f"{path}.tmp-{os.getpid()}"
  gfile_io.write_bytes(temporary, json.dumps(
      build(config, inputs), indent=2, ensure_ascii=False).encode("utf-8"))
  tf.io.gfile.rename(temporary, path, overwrite=True)
  logging.info("Wrote the run manifest %s", path)
  return path


def read(output_dir: str) -> Optional[dict[str, Any]]:
  """The folder's manifest, None when it has none.

  Raises:
    UserError: when it is not a manifest (not JSON, other keys).
  """
  path = manifest_path(output_dir)
  if not tf.io.gfile.exists(path):
    return None
  try:
    manifest = json.loads(gfile_io.read_bytes(path).decode("utf-8"))
    for key in ("labels", "files", "train_data", "model_settings"):
      manifest[key]  # pylint: disable=pointless-statement
  except (ValueError, TypeError, KeyError) as error:
    raise UserError(
        f"{path} is not a readable run manifest ({type(error).__name__}: "
        f"{error}); it records what the model in {output_dir} was trained "
        "with. Restore it, or train again in a new --output_dir.") from None
  return manifest


def _shown(labels: Sequence[str]) -> str:
  listed = " ".join(labels[:_SHOWN])
  return listed + (" ..." if len(labels) > _SHOWN else "")


def describe_label_change(found: Sequence[str],
                          trained: Sequence[str]) -> str:
  """What differs between two label lists, for a message.

  Example: found [O, B-LOC, B-PER], trained [O, B-PER, B-LOC] -> "the same 3
  labels in another order (line 2 is B-LOC, trained B-PER; line 3 is B-PER,
  trained B-LOC)".
  """
  if sorted(found) == sorted(trained):
    moved = [f"line {line} is {now}, trained {then}" for line, (now, then)
             in enumerate(zip(found, trained), start=1) if now != then]
    return (f"the same {len(found)} labels in another order "
            f"({'; '.join(moved[:3])}{'; ...' if len(moved) > 3 else ''})")
  missing = [label for label in trained if label not in found]
  added = [label for label in found if label not in trained]
  parts = [f"{len(found)} labels where the model has {len(trained)} outputs"]
  if missing:
    parts.append(f"without {_shown(missing)}")
  if added:
    parts.append(f"with {_shown(added)}, which the model never learned")
  return ", ".join(parts)


def _check_labels(labels: Sequence[str], source: str,
                  manifest: dict[str, Any], where: str) -> None:
  trained = manifest["labels"]
  if list(labels) == list(trained):
    return
  raise UserError(
      f"{source} does not hold the labels the model in {where} was trained "
      f"with: it has {describe_label_change(labels, trained)}. The trained "
      f"list, one a line, is: {' '.join(trained)} (from "
      f"{manifest_path(where)}). Restore {source} to it, or train again in "
      "a new --output_dir.")


def check_labels_file(output_dir: str, labels_file: str) -> None:
  """Checks labels.txt of a trained folder before anything reads it."""
  manifest = read(output_dir)
  if manifest is None or not tf.io.gfile.exists(labels_file):
    return
  try:
    labels = labels_lib.read_labels_file(labels_file, gfile_io.read_bytes)
  except ValueError as error:
    raise UserError(f"{error} It must be the trained list: "
                    f"{' '.join(manifest['labels'])} (from "
                    f"{manifest_path(output_dir)}).") from None
  _check_labels(labels, labels_file, manifest, output_dir)


def _layer_spec(value: Any) -> Optional[str]:
  """--student_layers as compared: None for none, no spaces ("1, 3" -> "1,3")."""
  text = "".join(str(value).split()) if value is not None else ""
  return text or None


def check_student_layers(config: Any) -> None:
  """Refuses --student_layers other than the trained folder's own.

  The student's config and encoder depend on it. Manifests written before
  the flag existed (no "student_layers" in "settings") are accepted.

  Raises:
    UserError: naming both values, the manifest and the fix.
  """
  where = config.output_dir
  settings = (read(where) or {}).get("settings") or {}
  if "student_layers" not in settings:
    return
  trained = _layer_spec(settings["student_layers"])
  now = _layer_spec(config.student_layers)
  if trained == now:
    return
  recorded = manifest_path(where)
  if trained is None:
    raise UserError(
        f"The model in {where} was trained without --student_layers "
        f"({recorded}), but this run has --student_layers={now}. Drop it, or "
        "train the student in a new --output_dir.")
  raise UserError(
      f"The model in {where} is a student trained with --student_layers="
      f"{trained} ({recorded}), but this run has "
      f"{'none' if now is None else f'--student_layers={now}'}: it would "
      f"build another model. Pass --student_layers={trained}, or train again "
      "in a new --output_dir.")


def _check_file(path: str, name: str, flag: str,
                manifest: dict[str, Any], where: str) -> None:
  recorded = manifest["files"].get(name)
  if not recorded:
    return
  found = cache_files.file_sha256(path)
  if found != recorded["sha256"]:
    raise UserError(
        f"{path} is not the {name.replace('_', ' ')} file the model in "
        f"{where} was trained with: its SHA-256 is {found[:12]}..., the "
        f"trained one's {recorded['sha256'][:12]}... ({recorded['path']}, "
        f"recorded in {manifest_path(where)}). Pass {flag} the trained "
        "file, or train again in a new --output_dir.")


def _check_settings(config: Any, manifest: dict[str, Any], where: str
                    ) -> None:
  trained = manifest["model_settings"]
  changed = [f"--{key}={getattr(config, key)!r} (trained with {trained[key]!r})"
             for key in MODEL_SETTINGS
             if key in trained and json.loads(json.dumps(
                 getattr(config, key))) != trained[key]]
  if changed:
    raise UserError(
        f"This run's model settings differ from those the model in {where} "
        f"was trained with: {', '.join(changed)} ({manifest_path(where)}). "
        "Pass the trained values, or train again in a new --output_dir.")


def _check_optimizer_settings(config: Any, manifest: dict[str, Any],
                              where: str) -> None:
  trained = manifest.get("settings", {})
  for key in OPTIMIZER_SETTINGS:
    if key in trained and getattr(config, key) != trained[key]:
      raise UserError(
          f"The checkpoints in {where} were trained with --{key}="
          f"{trained[key]!r} and this run has --{key}={getattr(config, key)!r} "
          f"({manifest_path(where)}): their optimizer variables differ, so "
          f"training cannot resume. Pass --{key}={trained[key]!r}, or train "
          f"in a new --output_dir (with --init_checkpoint="
          f"{tf.train.latest_checkpoint(where)} to start from this model).")


def _check_train_data(inputs: Any, manifest: dict[str, Any],
                      where: str) -> None:
  trained = {entry["sha256"]: entry["path"] for entry in manifest["train_data"]}
  for path in train_data_files(inputs):
    found = cache_files.file_sha256(path)
    if found in trained:
      continue
    then = [entry["sha256"] for entry in manifest["train_data"]
            if entry["path"] == path]
    what = (f"{path} changed since the checkpoints in {where} were trained "
            f"on it (SHA-256 now {found[:12]}..., then {then[0][:12]}...; "
            if then else
            f"{path} is not the training data the checkpoints in {where} were "
            f"trained on (recorded: {', '.join(trained.values())}; ")
    raise UserError(
        f"{what}{manifest_path(where)}): resuming would go on with other "
        "data. Restore the file, or train in a new --output_dir (with "
        f"--init_checkpoint={tf.train.latest_checkpoint(where)} to start "
        "from this model).")


def check(config: Any, inputs: Any, resuming_training: bool) -> bool:
  """Checks a run on a trained folder against its manifest.

  Args:
    config: the run's `NerConfig`.
    inputs: `RunInputs` with `labels` resolved (labels.txt not yet written).
    resuming_training: --do_train on a folder holding checkpoints: the
      training data is checked too.

  Returns:
    False when the folder has no manifest (trained before manifests).

  Raises:
    UserError: naming the first file or setting that differs.
  """
  where = config.output_dir
  manifest = read(where)
  if manifest is None:
    logging.warning("%s has no %s (trained by an older version): the files "
                    "this run reads are not checked against training.",
                    where, MANIFEST_FILENAME)
    return False
  _check_labels(inputs.labels, config.labels_file or inputs.labels_file,
                manifest, where)
  _check_file(inputs.vocab_file, "vocab", "--vocab_file", manifest, where)
  _check_file(inputs.bert_config_file, "bert_config", "--bert_config_file",
              manifest, where)
  _check_settings(config, manifest, where)
  if resuming_training:
    _check_optimizer_settings(config, manifest, where)
    _check_train_data(inputs, manifest, where)
  return True
