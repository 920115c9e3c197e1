"""The teacher's label distributions over the training windows, computed once.

--teacher_dir names a finished training run (its output_dir). `TeacherRun.load`
reads what that run was trained with from its run_manifest.json (labels,
vocab, bert_config.json, head settings) and finds its latest checkpoint.
`targets_file` runs the teacher, without dropout, over every window of the
student's training feature file and writes the teacher-targets TFRecord: the
feature file's records, in the same order, each with one more feature

    teacher_log_probs  bytes: little-endian float16 [n, L], the teacher's
                       log-probabilities of the L labels at each of the
                       window's n positions; 0 outside the distillation
                       positions (`distill_positions`)

which `input_pipeline.input_fn_builder(..., num_teacher_labels=L)` batches
like the other features. Example (L = 3)::

    window          [CLS] john johan ##son [SEP]
    word_positions     -1    0     1    -1    -1
    score_mask          0    0     1     0     0   (john is scored elsewhere)
    teacher_log_probs  0s   0s  log p(johan)  0s  0s

Files, under the run's cache folder, named by `cache_key` (the feature file's
SHA-256, the teacher checkpoint and its .index file's SHA-256, the labels):

    teacher-<key>.tfrecord        the records above
    teacher-<key>.tfrecord.json   num_windows, num_labels, length_histogram,
                                  teacher_dir, checkpoint, bytes, sha256

Each file is written under a temporary name and renamed into place, the .json
last. Before reuse the file must have the size and SHA-256 its .json records
(`input_pipeline.verified_feature_meta`, the feature files' rule), else it is
rebuilt with a warning naming it.

The manifest and the head settings are read here, not through
`trainer.run.manifest` and `trainer.training.estimator_lib.head_config`:
`trainer.run` imports this module and `trainer.training` imports
`trainer.distill.loss`, so this layer sits below both.
"""

import collections
import dataclasses
import json
import os
import time
import uuid
from typing import Any, Iterable, Iterator, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from trainer.features import cache_files
from trainer.features import encoder_cache
from trainer.features import input_pipeline
from trainer.model import heads as model_lib
from trainer import schema
from trainer.errors import UserError
from trainer.tf_compat import modeling
from trainer.tf_compat import tokenization

tf1 = tf.compat.v1

# Bump when the targets layout changes so old files are rebuilt.
FORMAT_VERSION = 1
FILE_PREFIX = "teacher"
# Windows per teacher batch; batches group windows of similar length.
BATCH_SIZE = 64
# Windows read (in file order) and length-sorted at a time: bounds memory.
CHUNK_BATCHES = 64
# The teacher's model inputs, fed as int32 [B, T].
_INPUT_KEYS = (schema.INPUT_IDS, schema.INPUT_MASK, schema.SEGMENT_IDS,
               schema.WORD_POSITIONS)


@dataclasses.dataclass
class TeacherRun:
  """A finished training run used as the teacher.

  Attributes:
    output_dir: the run's folder (--teacher_dir).
    checkpoint: its latest checkpoint prefix.
    bert_config_file: the BERT config it was trained with (a student's
      student_bert_config.json for a teacher that was itself a student).
    labels: its labels, in id order.
    head: its `model.heads.HeadConfig`.
    vocab_sha256: SHA-256 of the vocab it was trained with.
  """
  output_dir: str
  checkpoint: str
  bert_config_file: str
  labels: list[str]
  head: model_lib.HeadConfig
  vocab_sha256: str

  @classmethod
  def load(cls, teacher_dir: str) -> "TeacherRun":
    """Reads `teacher_dir`'s run manifest and finds its latest checkpoint.

    Raises:
      UserError: naming the folder and the fix, when it is missing, holds no
        run manifest or no checkpoint, or its bert_config or vocab file is
        gone or changed since training.
    """
    if not tf.io.gfile.isdir(teacher_dir):
      raise UserError(
          f"--teacher_dir={teacher_dir} does not exist. Pass the --output_dir "
          "of a finished training run (the folder holding its checkpoints and "
          f"{schema.RUN_MANIFEST_FILENAME}).")
    manifest = _read_manifest(teacher_dir)
    checkpoint = tf.train.latest_checkpoint(teacher_dir)
    if checkpoint is None:
      raise UserError(
          f"--teacher_dir={teacher_dir} holds no checkpoint: its training saved "
          f"none yet. Train it first (python run_ner.py --do_train "
          f"--output_dir={teacher_dir} ...), or pass another run's folder.")
    bert_config_file = _recorded_file(teacher_dir, manifest, "bert_config")
    vocab_file = _recorded_file(teacher_dir, manifest, "vocab")
    return cls(output_dir=teacher_dir, checkpoint=checkpoint,
               bert_config_file=bert_config_file,
               labels=list(manifest["labels"]),
               head=head_config(_settings(manifest),
                                tokenization.load_vocab(vocab_file)),
               vocab_sha256=manifest["files"]["vocab"]["sha256"])


def _read_manifest(teacher_dir: str) -> dict[str, Any]:
  """The run manifest of `teacher_dir` (`trainer.run.manifest`'s layout)."""
  path = os.path.join(teacher_dir, schema.RUN_MANIFEST_FILENAME)
  if not tf.io.gfile.exists(path):
    raise UserError(
        f"--teacher_dir={teacher_dir} is not a finished training run of this "
        f"trainer: it has no {schema.RUN_MANIFEST_FILENAME} (training writes "
        "one before its first step; folders trained by older versions get "
        f"one when training resumes). Pass a run's --output_dir, or resume "
        f"its training once (python run_ner.py --do_train "
        f"--output_dir={teacher_dir} ...).")
  try:
    with tf.io.gfile.GFile(path, "rb") as reader:
      manifest = json.loads(reader.read().decode("utf-8"))
    for name in ("bert_config", "vocab"):  # each a path and its SHA-256
      if not all(isinstance(manifest["files"][name][key], str)
                 for key in ("path", "sha256")):
        raise TypeError(f"files.{name} needs a path and a sha256")
    if not all(isinstance(label, str) for label in manifest["labels"]):
      raise TypeError("labels must be strings")
    head_config(_settings(manifest), {})  # every head setting is there
  except (ValueError, TypeError, KeyError) as error:
    raise UserError(
        f"{path} is not a readable run manifest ({type(error).__name__}: "
        f"{error}), so the teacher --teacher_dir={teacher_dir} cannot be "
        "used. Restore it, or pass another run's folder.") from None
  return manifest


def _settings(manifest: dict[str, Any]) -> dict[str, Any]:
  """The run's NerConfig fields (model settings first, for older manifests)."""
  return dict(manifest["model_settings"], **manifest.get("settings", {}))


def _recorded_file(teacher_dir: str, manifest: dict[str, Any],
                   name: str) -> str:
  """The path of a model file the manifest records, checked by SHA-256."""
  recorded = manifest["files"][name]
  path, where = recorded["path"], os.path.join(
      teacher_dir, schema.RUN_MANIFEST_FILENAME)
  if not tf.io.gfile.exists(path):
    raise UserError(
        f"The teacher's {name} file {path} (recorded in {where}) is missing: "
        f"it was moved or deleted after --teacher_dir={teacher_dir} was "
        "trained. Put the trained file back at that path.")
  found = cache_files.file_sha256(path)
  if found != recorded["sha256"]:
    raise UserError(
        f"The teacher's {name} file {path} changed after --teacher_dir="
        f"{teacher_dir} was trained: its SHA-256 is {found[:12]}..., the "
        f"trained one's {recorded['sha256'][:12]}... (recorded in {where}). "
        "Restore the trained file.")
  return path


def head_config(settings: dict[str, Any],
                vocab: dict[str, int]) -> model_lib.HeadConfig:
  """`HeadConfig` of a run from its manifest settings (NerConfig fields).

  The same mapping as `trainer.training.estimator_lib.head_config` (a test
  holds them equal), on the recorded dict instead of a `NerConfig`.
  """
  return model_lib.HeadConfig(
      kind=settings["head"], dropout=settings["head_dropout"],
      lstm_units=settings["lstm_units"], lstm_layers=settings["lstm_layers"],
      crf_constrain_bio=settings["crf_constrain_bio"],
      continuation_ids=model_lib.continuation_ids_from_vocab(vocab),
      bert_layers=tuple(settings["bert_layers"]),
      layer_combination=settings["layer_combination"])


def distill_positions(word_positions: np.ndarray, input_mask: np.ndarray,
                      score_mask: np.ndarray) -> np.ndarray:
  """bool [..., n]: where the teacher's targets are read.

  The numpy twin of `trainer.distill.loss.distill_mask`: a word start
  (word_positions >= 0) on a real position (input_mask 1) that this window
  scores (score_mask > 0).

  Example: word_positions [-1, 0, 1, -1], input_mask [1, 1, 1, 1],
  score_mask [0, 0, 1, 0] -> [False, False, True, False].
  """
  return ((np.asarray(word_positions) >= 0) & (np.asarray(input_mask) == 1)
          & (np.asarray(score_mask) > 0))


def cache_key(teacher: TeacherRun, features_sha256: str,
              labels: Sequence[str]) -> str:
  """16 hex digits: the windows (file SHA-256), the checkpoint, the labels."""
  settings = {"teacher_format": FORMAT_VERSION,
              "features_sha256": features_sha256,
              "checkpoint": os.path.abspath(teacher.checkpoint),
              "labels": list(labels)}
  return input_pipeline.cache_key([f"{teacher.checkpoint}.index"], settings)


def targets_file(teacher: TeacherRun, features_path: str, cache_dir: str,
                 student_labels: Sequence[str], student_vocab_file: str,
                 batch_size: int = BATCH_SIZE,
                 session_config: Optional[tf1.ConfigProto] = None
                 ) -> tuple[str, int]:
  """Builds (or reuses) the teacher targets of a training feature file.

  Args:
    teacher: `TeacherRun.load(--teacher_dir)`.
    features_path: the student's training feature TFRecord
      (`RunInputs.features_file("train")`, with its checked .json sidecar).
    cache_dir: folder of the targets file (the run's cache folder; created
      when missing).
    student_labels: the student's labels, in id order.
    student_vocab_file: the student's vocab.
    batch_size: windows per teacher batch.
    session_config: e.g. the run's `estimator_lib.session_config`.

  Returns:
    (path of the targets TFRecord, number of windows).

  Raises:
    UserError: when the student's labels or vocab differ from the teacher's
      (the targets would mean other labels or other pieces), or the feature
      file has no valid sidecar.
  """
  _check_student(teacher, student_labels, student_vocab_file)
  features_meta, problem = input_pipeline.verified_feature_meta(features_path)
  if features_meta is None:
    raise UserError(
        f"The training features {features_path} cannot be read for the "
        f"teacher targets: {problem or 'the file or its .json is missing'}. "
        "Rerun to rebuild the feature cache.")
  key = cache_key(teacher, features_meta["sha256"], student_labels)
  path = os.path.join(cache_dir, f"{FILE_PREFIX}-{key}.tfrecord")
  meta, problem = input_pipeline.verified_feature_meta(path)
  if meta is not None:
    logging.info("Reusing the teacher targets of %d windows from %s",
                 meta["num_windows"], path)
    return path, meta["num_windows"]
  if problem:
    logging.warning("Rebuilding the teacher targets %s: %s.", path, problem)
    cache_files.remove_files([f"{path}.json", path],
                             f"The teacher targets file {path}",
                             "pass another --output_dir")
  tf.io.gfile.makedirs(cache_dir)
  count = _build(teacher, features_path, features_meta, path, batch_size,
                 session_config)
  return path, count


def _check_student(teacher: TeacherRun, labels: Sequence[str],
                   vocab_file: str) -> None:
  """The student must read the teacher's labels and vocab."""
  if list(labels) != list(teacher.labels):
    raise UserError(
        f"The student's labels ({' '.join(labels)}) are not those of the "
        f"teacher --teacher_dir={teacher.output_dir} ({' '.join(teacher.labels)}"
        "), in that order: the teacher's distributions are over its labels. "
        "Train the student with the teacher's labels: --labels_file "
        f"{os.path.join(teacher.output_dir, schema.LABELS_FILENAME)}.")
  found = cache_files.file_sha256(vocab_file)
  if found != teacher.vocab_sha256:
    raise UserError(
        f"The student's vocab {vocab_file} is not the teacher's (SHA-256 "
        f"{found[:12]}..., the teacher --teacher_dir={teacher.output_dir} "
        f"was trained with {teacher.vocab_sha256[:12]}...): its windows would "
        "be other word-pieces. Pass --vocab_file the teacher's vocab (its "
        f"{schema.RUN_MANIFEST_FILENAME} names it).")


def _chunks(records: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
  chunk = []
  for record in records:
    chunk.append(record)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


def _inputs(example: tf.train.Example) -> dict[str, np.ndarray]:
  """int32 [n] arrays of the features the teacher and the mask read."""
  feature = example.features.feature
  return {key: np.array(feature[key].int64_list.value, np.int32)
          for key in _INPUT_KEYS + (schema.SCORE_MASK,)}


def _padded(windows: Sequence[dict[str, np.ndarray]],
            batch: np.ndarray) -> dict[str, np.ndarray]:
  """int32 [B, T] teacher inputs of windows `batch`, padded as batches are."""
  width = max(len(windows[index][schema.INPUT_IDS]) for index in batch)
  feed = {key: np.full([len(batch), width], schema.PADDING_VALUES[key],
                       np.int32) for key in _INPUT_KEYS}
  for row, index in enumerate(batch):
    for key in _INPUT_KEYS:
      feed[key][row, :len(windows[index][key])] = windows[index][key]
  return feed


def _targets(window: dict[str, np.ndarray], log_probs: np.ndarray,
             teacher: TeacherRun) -> bytes:
  """The stored bytes of one window: float16 [n, L], 0 off the positions."""
  length = len(window[schema.INPUT_IDS])
  rows = log_probs[:length]
  if not np.isfinite(rows).all():
    raise UserError(
        f"The teacher checkpoint {teacher.checkpoint} gives non-finite "
        "log-probabilities (NaN or inf); check that model, or pass another "
        "--teacher_dir.")
  keep = distill_positions(window[schema.WORD_POSITIONS],
                           window[schema.INPUT_MASK],
                           window[schema.SCORE_MASK])
  return np.where(keep[:, None], rows, 0.0).astype("<f2").tobytes()


def _build(teacher: TeacherRun, features_path: str,
           features_meta: dict[str, Any], path: str, batch_size: int,
           session_config: Optional[tf1.ConfigProto]) -> int:
  """Runs the teacher over every window; writes `path` and its .json."""
  start = time.time()
  histogram = features_meta["length_histogram"]
  lengths = np.repeat(np.array(list(histogram), np.int64),
                      list(histogram.values()))
  logging.info("Computing the teacher targets of %d training windows with %s "
               "at %s", len(lengths), teacher.checkpoint, path)
  temporary = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
  try:
    written = _write_records(
        teacher, features_path, temporary, batch_size, session_config,
        encoder_cache.BuildProgress(lengths, "Teacher targets"))
  except BaseException:  # a half-written file must not stay behind
    if tf.io.gfile.exists(temporary):
      tf.io.gfile.remove(temporary)
    raise
  return _commit(temporary, path, written, teacher, start)


def _write_records(teacher: TeacherRun, features_path: str, temporary: str,
                   batch_size: int, session_config: Optional[tf1.ConfigProto],
                   progress: encoder_cache.BuildProgress
                   ) -> collections.Counter:
  """Writes every record plus its targets, in file order; returns lengths.

  Windows are read CHUNK_BATCHES batches at a time and run in batches of
  similar length (least padding), then written back in their order.
  """
  written = collections.Counter()
  with tf.Graph().as_default():
    inputs = {key: tf1.placeholder(tf.int32, [None, None], name=key)
              for key in _INPUT_KEYS}
    log_distribution = model_lib.build_head(
        modeling.BertConfig.from_json_file(teacher.bert_config_file),
        teacher.labels, inputs, is_training=False,
        head=teacher.head).log_distribution
    saver = tf1.train.Saver(tf1.global_variables())
    with tf1.Session(config=session_config) as session, \
        tf.io.TFRecordWriter(temporary) as writer:
      _restore(saver, session, teacher)
      done = pieces = 0
      for chunk in _chunks(tf1.io.tf_record_iterator(features_path),
                           CHUNK_BATCHES * batch_size):
        examples = [tf.train.Example.FromString(record) for record in chunk]
        windows = [_inputs(example) for example in examples]
        lengths = np.array([len(window[schema.INPUT_IDS])
                            for window in windows])
        for batch in encoder_cache.length_sorted_batches(lengths, batch_size):
          values = session.run(log_distribution, {
              inputs[key]: value
              for key, value in _padded(windows, batch).items()})
          for row, index in enumerate(batch):
            examples[index].features.feature[
                schema.TEACHER_LOG_PROBS].bytes_list.value.append(
                    _targets(windows[index], values[row], teacher))
          done, pieces = done + len(batch), pieces + int(lengths[batch].sum())
          progress.update(done, pieces)
        for example, length in zip(examples, lengths):
          writer.write(example.SerializeToString())
          written[int(length)] += 1
  return written


def _restore(saver: tf1.train.Saver, session: tf1.Session,
             teacher: TeacherRun) -> None:
  """Restores the teacher's variables, or says its checkpoint lacks them."""
  try:
    saver.restore(session, teacher.checkpoint)
  except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as error:
    raise UserError(
        f"The teacher checkpoint {teacher.checkpoint} does not hold the model "
        f"its {schema.RUN_MANIFEST_FILENAME} describes "
        f"({teacher.bert_config_file}, head {teacher.head.kind}): "
        f"{error.message.splitlines()[0]} Pass another --teacher_dir."
    ) from None


def _commit(temporary: str, path: str, histogram: collections.Counter,
            teacher: TeacherRun, start: float) -> int:
  """Renames the targets into place, then writes their .json; returns N."""
  size = tf.io.gfile.stat(temporary).length
  meta = {"num_windows": sum(histogram.values()),
          "num_labels": len(teacher.labels),
          "length_histogram": {str(k): v for k, v in sorted(histogram.items())},
          "teacher_dir": teacher.output_dir, "checkpoint": teacher.checkpoint,
          "bytes": size, "sha256": cache_files.file_sha256(temporary)}
  tf.io.gfile.rename(temporary, path, overwrite=True)
  with tf.io.gfile.GFile(f"{temporary}.json", "w") as writer:
    json.dump(meta, writer, indent=2)
  tf.io.gfile.rename(f"{temporary}.json", f"{path}.json", overwrite=True)
  logging.info("Wrote the teacher targets of %d windows (%d bytes) to %s in "
               "%.1f s", meta["num_windows"], size, path, time.time() - start)
  return meta["num_windows"]
