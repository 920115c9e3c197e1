"""The inputs of one run: data files, sentences, labels, vocab and features.

`RunInputs(config)` only resolves paths; `prepare()` writes what the run
needs into output_dir (the from-scratch model's vocab.txt and
bert_config.json, a --student_layers student's student_bert_config.json,
labels.txt) and loads the tokenizer. The run phases in
`trainer.run.train_lib` then ask it for sentences and feature files:

    inputs = RunInputs(config).prepare()
    path, windows = inputs.features_file("train")   # cached TFRecord
"""

import itertools
import json
import os
from typing import Iterator, Optional, Sequence

from absl import logging
import tensorflow as tf

from trainer.run import config as config_lib
from trainer.run import manifest
from trainer.features import context as context_lib
from trainer.features import windows as features_lib
from trainer import gfile_io
from trainer.features import input_pipeline
from trainer.data import labels as labels_lib
from trainer.data import readers
from trainer import schema
from trainer.features import tokenization
from trainer.errors import UserError
from trainer.data.sample_data import sample_data_dir
from trainer.data import data_files
from trainer.data import data_warnings
from trainer.data.formats import parallel_reader
from trainer.data.formats import reader_common
from trainer.distill import layers as distill_layers
from trainer.distill import options as distill_options
from trainer.distill import student_data


def resolve_data_files(config: config_lib.NerConfig
                       ) -> dict[str, Optional[str]]:
  """Returns {'train','dev','test'} -> path or None for the run.

  `--data_dir` supplies conventional names; `--train_file`, `--eval_file` and
  `--predict_file` override. With the embedded default the sample is used.
  """
  data_dir = config.data_dir
  if config_lib.uses_embedded_default(config):
    data_dir = sample_data_dir()
  files = (data_files.find_split_files(data_dir) if data_dir
           else {"train": None, "dev": None, "test": None})
  for split, flag in data_files.SPLIT_FLAGS.items():
    if getattr(config, flag):
      files[split] = getattr(config, flag)
  return files


def build_vocab(sentences: Sequence[reader_common.Sentence],
                do_lower_case: bool, path: str) -> int:
  """Writes a vocab of the special tokens plus every piece of `sentences`.

  Used only for a from-scratch model: characters (or words) are split and
  lower-cased the way BERT's basic tokenizer does, so each becomes one whole
  piece. Order: specials, then first appearance. Returns the vocab size.

  Example: sentences [["Paris", "!"]] -> "[PAD] [UNK] [CLS] [SEP] [MASK]
  paris !" (one per line), returns 7.
  """
  basic = tokenization.basic_tokenizer(do_lower_case)
  vocab = list(schema.SPECIAL_TOKENS)
  seen = set(vocab)
  for sentence in sentences:
    for token in sentence.tokens:
      for piece in basic.tokenize(token):
        if piece not in seen:
          seen.add(piece)
          vocab.append(piece)
  with tf.io.gfile.GFile(path, "w") as writer:
    writer.write("".join(f"{piece}\n" for piece in vocab))
  return len(vocab)


def _read_json_or_none(path: str) -> Optional[dict]:
  """The JSON object in `path`; None when it is missing or not one."""
  if not tf.io.gfile.exists(path):
    return None
  try:
    value = json.loads(gfile_io.read_bytes(path).decode("utf-8"))
  except (ValueError, UnicodeDecodeError):
    return None
  return value if isinstance(value, dict) else None


def prepare_output_dir(output_dir: str) -> None:
  """Creates output_dir and its feature cache folder.

  Raises:
    UserError: when output_dir is a file or cannot be created, naming it and
      the cause.
  """
  if tf.io.gfile.exists(output_dir) and not tf.io.gfile.isdir(output_dir):
    raise UserError(f"--output_dir={output_dir} is a file, not a directory; "
                    "pass a folder (it is created if missing).")
  try:
    tf.io.gfile.makedirs(os.path.join(output_dir, schema.CACHE_DIRNAME))
  except (tf.errors.OpError, OSError) as error:
    raise UserError(f"Cannot create --output_dir={output_dir}: "
                    f"{getattr(error, 'message', error)}") from None


class RunInputs:
  """Paths, sentences, labels, tokenizer and feature files of one run."""

  def __init__(self, config: config_lib.NerConfig):
    """Resolves the run's paths; reads and writes nothing but folder listings."""
    self.config = config
    self.files = resolve_data_files(config)
    self.cache_dir = os.path.join(config.output_dir, schema.CACHE_DIRNAME)
    # The model given (or the from-scratch one); a student is built from
    # its own config, written by prepare() from this one.
    self.source_bert_config_file, self.vocab_file = config_lib.model_files(
        config)
    self.bert_config_file = self.source_bert_config_file
    if distill_options.parse_layer_spec(config.student_layers) is not None:
      self.bert_config_file = os.path.join(
          config.output_dir, schema.STUDENT_BERT_CONFIG_FILENAME)
    # The source layer behind each student layer and the source's layer
    # count; None unless a student (set by prepare()).
    self.student_layers: Optional[list[int]] = None
    self.source_layers: Optional[int] = None
    self.labels_file = os.path.join(config.output_dir, schema.LABELS_FILENAME)
    self.labels: Optional[list[str]] = None  # set by prepare()
    self.tokenizer: Optional[tokenization.NerTokenizer] = None  # prepare()
    self._sentences: dict[str, list[reader_common.Sentence]] = {}
    self._features: dict[str, tuple[str, int]] = {}
    # What the readers accepted with a change (dropped nested spans, ...).
    self.data_warnings = data_warnings.DataWarnings()
    self._reused_scratch_vocab = False

  def prepare(self) -> "RunInputs":
    """Creates output_dir, model files and labels.txt; loads the tokenizer.

    The model files: a from-scratch model's vocab.txt and bert_config.json,
    and with --student_layers student_bert_config.json, which then is
    `bert_config_file` for every phase. On a folder holding checkpoints,
    first checks the run's labels, model files and settings (the student's
    layers before its config is rewritten) against the run manifest
    (`trainer.run.manifest`);
    a training run then writes the manifest (a new one, or for a folder
    trained before manifests). Only the chief of a multi-worker job
    prepares.
    """
    prepare_output_dir(self.config.output_dir)
    trained = tf.train.latest_checkpoint(self.config.output_dir) is not None
    if trained:  # an edited labels.txt is named before anything reads it
      manifest.check_labels_file(self.config.output_dir, self.labels_file)
      manifest.check_student_layers(self.config)  # before it is rewritten
    warnings_path = self._data_warnings_path()
    if tf.io.gfile.exists(warnings_path):
      tf.io.gfile.remove(warnings_path)  # a stale list from an earlier run
    self._write_from_scratch_model_files()
    self._write_student_bert_config(trained)
    self.labels = self._resolve_labels()
    checked = trained and manifest.check(self.config, self,
                                         self.config.do_train)
    labels_lib.write_labels_file(self.labels, self.labels_file,
                                 gfile_io.write_bytes)
    if self.config.do_train and not checked:
      manifest.write(self.config, self)
    logging.info("Labels (%d): %s", len(self.labels), " ".join(self.labels))
    self.tokenizer = tokenization.NerTokenizer(self.vocab_file,
                                               self.config.do_lower_case)
    if self._reused_scratch_vocab:
      self._warn_unknown_training_tokens()
    return self

  def splits_needed(self) -> list[str]:
    """The splits the configured phases read, in reading order."""
    config = self.config
    return [split for split, wanted in (("train", config.do_train),
                                        ("dev", config.do_eval),
                                        ("test", config.do_predict))
            if wanted]

  def validate_data(self) -> None:
    """Reads, checks and converts every split the run needs, before step 1.

    A bad tag in the dev file is reported before training, not after it.
    """
    for split in self.splits_needed():
      self.features_file(split)

  def _data_warnings_path(self) -> str:
    return os.path.join(self.config.output_dir, schema.DATA_WARNINGS_FILENAME)

  def _record_warnings(self, split: str,
                       split_warnings: data_warnings.DataWarnings) -> None:
    """Logs a split's data warnings and rewrites data_warnings.txt."""
    if not len(split_warnings):
      return
    self.data_warnings.extend(split_warnings)
    for line in split_warnings.summary_lines():
      logging.warning("Data warning (%s): %s", split, line)
    path = self._data_warnings_path()
    gfile_io.write_bytes(path, "".join(
        f"{line}\n" for line in self.data_warnings.format_lines()
    ).encode("utf-8"))
    logging.warning("All %d data warnings are listed in %s",
                    len(self.data_warnings), path)

  def _warn_unknown_training_tokens(self) -> None:
    """Warns when a reused from-scratch vocab does not cover the train data.

    The first run builds vocab.txt from its training data; a rerun in the
    same output_dir with different data reuses it, and unseen tokens become
    [UNK].
    """
    if not self.config.do_train:
      return
    unknown, total, first = 0, 0, None
    for sentence in self.sentences("train"):
      for token in sentence.tokens:
        total += 1
        if schema.UNK_TOKEN in self.tokenizer.tokenize_word(token):
          unknown += 1
          first = first or f"{sentence.source} ({token!r})"
    if unknown:
      logging.warning(
          "%d of %d training tokens map to %s with the from-scratch "
          "vocabulary reused from %s (built by an earlier run on other data), "
          "first at %s. Use a new --output_dir to build a vocabulary for this "
          "data.", unknown, total, schema.UNK_TOKEN, self.vocab_file, first)

  def sentences(self, split: str) -> list[reader_common.Sentence]:
    """Sentences of a split ('train', 'dev' or 'test'), read once."""
    if split not in self._sentences:
      path = self.files[split]
      if not path and self.config.data_dir:
        raise UserError(data_files.missing_split_message(self.config.data_dir,
                                                      split))
      if not path:
        raise UserError(f"No {split} file: pass --data_dir with a {split} "
                        f"file or --{data_files.SPLIT_FLAGS[split]}.")
      logging.info("Reading %s data from %s", split, path)
      data_format = self.config.data_format
      split_warnings = data_warnings.DataWarnings()
      sentences = readers.read_sentences(
          path, data_format,
          overlapping_spans=self.config.overlapping_spans,
          strip_token_suffix_digit=self.config.strip_token_suffix_digit,
          warnings=split_warnings)
      self._record_warnings(split, split_warnings)
      if split != "test" and all(s.tags is None for s in sentences):
        if data_format == "auto":
          data_format = readers.detect_format(path)
        raise UserError(
            f"{path} was read as {data_format!r} (unlabelled) but {split} "
            "data needs tags. Expected CoNLL lines 'token ... tag', a "
            "parallel tokens/tags pair or CLUENER jsonl; pass --data_format "
            "to choose explicitly.")
      self._sentences[split] = sentences
    return self._sentences[split]

  def _write_from_scratch_model_files(self) -> None:
    """vocab.txt and bert_config.json of a tiny from-scratch model, once."""
    if self.config.bert_config_file:
      return
    self._reused_scratch_vocab = tf.io.gfile.exists(self.vocab_file)
    if not self._reused_scratch_vocab:
      size = build_vocab(self.sentences("train"), self.config.do_lower_case,
                         self.vocab_file)
      logging.info("Built a %d-piece vocabulary from the training data: %s",
                   size, self.vocab_file)
    if not tf.io.gfile.exists(self.source_bert_config_file):
      with tf.io.gfile.GFile(self.vocab_file) as reader:
        vocab_size = sum(1 for line in reader if line.strip())
      with tf.io.gfile.GFile(self.source_bert_config_file, "w") as writer:
        json.dump(dict(config_lib.TINY_BERT_CONFIG, vocab_size=vocab_size),
                  writer, indent=2)
      logging.info("Wrote a tiny from-scratch BERT config to %s",
                   self.source_bert_config_file)

  def _write_student_bert_config(self, trained: bool) -> None:
    """student_bert_config.json of a --student_layers run (atomically).

    The source model's config with the student's num_hidden_layers
    (`distill.layers.student_bert_config`); sets `student_layers` and
    `source_layers`.

    Args:
      trained: output_dir holds checkpoints; their student config must not
        change.

    Raises:
      UserError: when the source config has no layer count, the spec does
        not fit it, or the trained student's config differs from this one.
    """
    spec = self.config.student_layers
    if distill_options.parse_layer_spec(spec) is None:
      return
    source_path, path = self.source_bert_config_file, self.bert_config_file
    source = json.loads(gfile_io.read_bytes(source_path).decode("utf-8"))
    if not isinstance(source.get("num_hidden_layers"), int):
      raise UserError(f"{source_path} has no integer 'num_hidden_layers'; "
                      f"--student_layers={spec} chooses among the source "
                      "model's layers. Pass its bert_config.json.")
    self.source_layers = source["num_hidden_layers"]
    self.student_layers = distill_layers.resolve_student_layers(
        spec, self.source_layers, source_path,
        self.config.student_layer_choice)
    student = distill_layers.student_bert_config(source, self.student_layers)
    previous = _read_json_or_none(path)
    if trained and not tf.io.gfile.exists(path):
      raise UserError(
          f"The checkpoints in {self.config.output_dir} were trained without "
          f"--student_layers (there is no {path}), but this run has "
          f"--student_layers={spec}. Drop it, or train the student in a new "
          "--output_dir.")
    if trained and previous != student:
      raise UserError(
          f"{path} is the student config the checkpoints in "
          f"{self.config.output_dir} were trained with, but --student_layers="
          f"{spec} of {source_path} gives another ("
          f"{distill_layers.describe_config_change(previous, student)}). Pass "
          "the trained --student_layers and --bert_config_file, or train "
          "again in a new --output_dir.")
    if previous != student:
      temporary = f"{path}.tmp-{os.getpid()}"
      gfile_io.write_bytes(temporary, json.dumps(
          student, indent=2, sort_keys=True).encode("utf-8"))
      tf.io.gfile.rename(temporary, path, overwrite=True)
    logging.info("Student: %d of %d layers (%s) from %s",
                 len(self.student_layers), self.source_layers,
                 ", ".join(map(str, self.student_layers)), source_path)

  def _resolve_labels(self) -> list[str]:
    """The run's labels: --labels_file, the training data's, or labels.txt.

    Raises:
      UserError: with no source of labels, or when they differ from those of
        the checkpoints already in output_dir.
    """
    config = self.config
    if config.labels_file:
      labels = labels_lib.read_labels_file(config.labels_file,
                                           gfile_io.read_bytes)
    elif config.do_train:
      labels = labels_lib.build_label_list([self.sentences("train")])
      teacher_labels = os.path.join(config.teacher_dir or "",
                                    schema.LABELS_FILENAME)
      if config.teacher_dir and tf.io.gfile.exists(teacher_labels):
        labels = student_data.labels_in_teacher_order(
            labels, labels_lib.read_labels_file(teacher_labels,
                                                gfile_io.read_bytes))
    elif tf.io.gfile.exists(self.labels_file):
      labels = labels_lib.read_labels_file(self.labels_file,
                                           gfile_io.read_bytes)
    else:
      raise UserError(f"No label list: {self.labels_file} does not exist. "
                      "Run with --do_train first, or pass --labels_file.")
    if config.do_train:
      labels_lib.check_labels_known(self.sentences("train"), labels,
                                    "--labels_file")
    trained = tf.train.latest_checkpoint(config.output_dir) is not None
    if (tf.io.gfile.exists(self.labels_file) and not config.labels_file
        and trained):
      previous = labels_lib.read_labels_file(self.labels_file,
                                             gfile_io.read_bytes)
      if previous != labels:
        raise UserError(
            f"{self.labels_file} holds labels {previous} from an earlier run, "
            f"but this data gives {labels}. Use a new --output_dir or pass "
            f"--labels_file {self.labels_file}.")
    return labels

  def features_file(self, split: str) -> tuple[str, int]:
    """Builds (or reuses) the feature TFRecord of a split, once per run.

    Returns:
      (path, number of windows).
    """
    if split not in self._features:
      self._features[split] = self._build_features_file(split)
    return self._features[split]

  def _build_features_file(self, split: str) -> tuple[str, int]:
    config = self.config
    data_path = self.files[split]
    if not data_path:
      self.sentences(split)  # raises "No <split> file: ..."
    settings = {
        "max_seq_length": config.max_seq_length,
        "doc_stride": config.doc_stride,
        "do_lower_case": config.do_lower_case,
        "data_format": config.data_format,
        "overlapping_spans": config.overlapping_spans,
        "strip_token_suffix_digit": config.strip_token_suffix_digit,
        "labels": self.labels,
    }
    if config.context_pieces:
      # Only when on, so context_pieces=0 keeps the earlier runs' cache keys.
      settings.update(context_pieces=config.context_pieces,
                      context_scope=config.context_scope)
    inputs = [data_path, self.vocab_file]
    partner = parallel_reader.parallel_partner(data_path)
    if partner and tf.io.gfile.exists(partner):
      inputs.append(partner)
    # Distillation's tag-less sentences follow the training sentences.
    unlabelled = config.distill_unlabelled_file if split == "train" else None
    if unlabelled:
      settings["distill_unlabelled"] = True  # earlier keys stay as they were
      student_data.require_unlabelled_file(unlabelled)  # before hashing
      inputs.append(unlabelled)
    key = input_pipeline.cache_key(inputs, settings)
    path = input_pipeline.cache_path(self.cache_dir, split, key)
    meta, problem = input_pipeline.verified_feature_meta(path)
    if meta is not None:
      input_pipeline.log_cache_use(path, meta["num_windows"], reused=True)
      return path, meta["num_windows"]
    if problem:
      logging.warning("Rebuilding the %s feature cache: %s.", split, problem)
    sentences = self.sentences(split)
    labels_lib.check_labels_known(sentences, self.labels, "--labels_file")
    windows = self._windows(split, sentences)
    if unlabelled:
      extra = student_data.read_unlabelled(unlabelled)
      logging.info("Training sentences: %d from %s +%d unlabelled sentences "
                   "from %s (learnt from the teacher only)", len(sentences),
                   data_path, len(extra), unlabelled)
      windows = itertools.chain(windows, self._windows(
          "unlabelled", extra, first_index=len(sentences)))
    try:
      count = input_pipeline.write_features(windows, path)
    except (tf.errors.OpError, OSError) as error:
      if not problem:
        raise  # a full disk or a read-only folder: errors.py names it
      raise UserError(
          f"The {split} feature cache {path} cannot be used ({problem}) and "
          f"could not be rebuilt: {getattr(error, 'message', error)}. Remove "
          f"it (rm {path} {path}.json) or make {self.cache_dir} writable, "
          "then rerun.") from None
    input_pipeline.log_cache_use(path, count, reused=False)
    return path, count

  def _windows(self, split: str, sentences: Sequence[reader_common.Sentence],
               first_index: int = 0) -> Iterator[features_lib.WindowFeatures]:
    """Feature windows of every sentence, in order, with document context.

    Sentence i gets example index `first_index` + i (unlabelled sentences
    continue after the training sentences); tags None give label -1 on
    every position.
    """
    label_ids = labels_lib.label_map(self.labels)
    if self.config.context_pieces:
      logging.info("Document context for %s: %s", split, context_lib.describe(
          sentences, self.config.context_pieces, self.config.context_scope))
    with_context = context_lib.sentences_with_context(
        sentences, self.tokenizer, self.config.context_pieces,
        self.config.context_scope)
    for index, (sentence, (word_pieces, context)) in enumerate(
        zip(sentences, with_context)):
      tag_ids = (None if sentence.tags is None
                 else [label_ids[tag] for tag in sentence.tags])
      yield from features_lib.convert_sentence(
          sentence.tokens, tag_ids, first_index + index, self.tokenizer,
          self.config.max_seq_length, self.config.doc_stride,
          context=context, word_pieces=word_pieces)
      if (index + 1) % 5000 == 0:
        logging.info("Converted %d/%d %s sentences", index + 1,
                     len(sentences), split)
