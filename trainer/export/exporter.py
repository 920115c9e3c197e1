"""SavedModel export for TensorFlow Serving: signatures, warmup, versions.

Layout written by `export_model` (names from `trainer.schema`)::

    <export_dir>/<version>/saved_model.pb          version = 1 + highest existing
    <export_dir>/<version>/variables/...
    <export_dir>/<version>/assets/vocab.txt
    <export_dir>/<version>/assets/labels.txt
    <export_dir>/<version>/assets/run_manifest.json    what it was trained with
    <export_dir>/<version>/assets.extra/ner_config.json
    <export_dir>/<version>/assets.extra/tf_serving_warmup_requests

Before anything is written, the labels must number the head's outputs
(`check_label_count`): a labels.txt that lost a line is refused, not exported
to crash the server at start-up.

A version is written under a hidden temporary name in `export_dir` and renamed
into place, so TF Serving never sees a half-written version and an existing
version is never overwritten (version numbers:
`trainer.export.export_versions`). Temporary folders over an hour old, left by
killed exports, are removed by the next export.

Every signature checks its inputs in the graph before the model runs
(`trainer.export.serving_checks`): ids outside [0, vocab_size), segment ids
outside [0, type_vocab_size), a mask not 0/1, more positions than
max_position_embeddings, or a text over max_text_chars fail with
INVALID_ARGUMENT naming the input and the value, in TF Serving as well.

Signatures (B = batch, T = positions, C = characters)::

    serving_default   in:  input_ids, input_mask, segment_ids  int32 [B, T]
                      out: tags string [B, T], label_ids int32 [B, T],
                           scores float32 [B, T] (probability of the chosen tag)
    predict_examples  in:  examples string [B], serialized tf.Example holding
                           int64 lists input_ids, input_mask, segment_ids
                           and optionally word_positions (the training
                           TFRecord layout; padded to the longest example)
                      out: as serving_default
    predict_text      in:  text string [B], raw UTF-8 sentences
                      out: tags string [B, C], label_ids int32 [B, C],
                           scores float32 [B, C], lengths int32 [B]
                      (only for character-level models; the in-graph
                      tokenizer is `trainer.export.text_signature`)

For serving_default and predict_examples only positions holding the first
word-piece of a word carry a meaningful tag; the client finds them with the
same feature conversion as training
(`trainer.features.windows.convert_sentence`). Heads that decode per word (CRF)
need to know those positions in the graph: predict_examples takes them from
`word_positions` (exact; send it for every example of a request or for none),
serving_default derives them from the ids (`model.word_start_mask`: a word
starts at every piece that is not "##..." or a special token, so a word that is
all [UNK] is not seen as one there).

With `do_eval`, `export_best` exports a checkpoint only when its eval entity
F1 beats every earlier one, so the highest version of `export_best/` is the
best model.
"""

import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence
import uuid

from absl import logging
import numpy as np
import tensorflow as tf

from trainer.export import export_versions
from trainer.export import saved_model_writer
from trainer import gfile_io
from trainer.data import labels as labels_lib
from trainer.model import heads as model_lib
from trainer import schema
from trainer.export import serving_checks
from trainer.export import text_signature
from trainer.features import tokenization
from trainer.tf_compat import modeling

tf1 = tf.compat.v1

# Characters that appear in the warmup requests of predict_text.
_WARMUP_TEXT_CHARACTERS = 6


def _signature(inputs, outputs):
  return tf1.saved_model.predict_signature_def(inputs=inputs, outputs=outputs)


def _example_features(examples: tf.Tensor, head: model_lib.HeadConfig,
                      bert_config: modeling.BertConfig
                      ) -> Dict[str, tf.Tensor]:
  """Parses predict_examples' serialized tf.Examples into model features.

  The int64 values are checked (`serving_checks.checked_model_inputs`) before
  the cast to int32, so an id of 2**32 + 10 is refused rather than read as 10.

  Args:
    examples: string [B], serialized tf.Example with the training TFRecords'
      int64 lists (unpadded; padded here to the longest example).
    head: gives the continuation ids used when `word_positions` is absent.
    bert_config: the limits `checked_model_inputs` enforces.

  Returns:
    input_ids, input_mask, segment_ids, word_positions: int32 [B, T]. Heads
    that predict per word (CRF) use word_positions to find first pieces: the
    requests' own when every example carries it, else derived from the ids
    (0 at word starts, -1 elsewhere).

  Example: one example {input_ids [2, 7, 3], input_mask [1, 1, 1],
  segment_ids [0, 0, 0]} with "7" an ordinary piece -> word_positions
  [[-1, 0, -1]].
  """
  keys = schema.MODEL_INPUT_KEYS + (schema.WORD_POSITIONS,)
  parsed = tf.io.parse_example(examples, {
      key: tf.io.FixedLenSequenceFeature(
          [], tf.int64, allow_missing=True,
          default_value=schema.PADDING_VALUES[key])
      for key in keys})
  parsed = serving_checks.checked_model_inputs(parsed, bert_config)
  features = {key: tf.cast(parsed[key], tf.int32) for key in keys}
  given = features[schema.WORD_POSITIONS]
  derived = tf.where(
      model_lib.word_start_mask(
          {key: features[key] for key in schema.MODEL_INPUT_KEYS},
          head.continuation_ids), 0, schema.NO_WORD)
  features[schema.WORD_POSITIONS] = tf.cond(
      tf.equal(tf.shape(given)[1], tf.shape(derived)[1]),
      lambda: given, lambda: derived)
  return features


def build_serving_graph(bert_config: modeling.BertConfig,
                        label_names: Sequence[str],
                        head: model_lib.HeadConfig, tokenizer,
                        tokenizer_kind: str, max_seq_length: int,
                        doc_stride: int, max_text_chars: int) -> Dict[str, Any]:
  """Builds every signature in the default graph, sharing one set of variables.

  Args:
    bert_config: `modeling.BertConfig`.
    label_names: list of str, index = label id.
    head: `model.HeadConfig` the checkpoint was trained with.
    tokenizer: `tokenization.NerTokenizer` of the training vocab.
    tokenizer_kind: `schema.CHAR_TOKENIZER` adds predict_text.
    max_seq_length, doc_stride, max_text_chars: see
      `text_signature.text_features`.

  Returns:
    dict signature name -> SignatureDef.
  """
  signatures = {}

  def model_outputs(features):
    # Entering the current scope object (not a name) restores the scope
    # counters on exit, so every call creates "bert/..." again and AUTO_REUSE
    # makes it the same variables.
    with tf1.variable_scope(tf1.get_variable_scope(), reuse=tf1.AUTO_REUSE):
      return model_lib.build_outputs(bert_config, label_names, features,
                                     head=head)

  with tf.name_scope(schema.SERVING_DEFAULT_SIGNATURE):
    inputs = {key: tf1.placeholder(tf.int32, [None, None], name=key)
              for key in schema.MODEL_INPUT_KEYS}
    signatures[schema.SERVING_DEFAULT_SIGNATURE] = _signature(
        inputs, model_outputs(serving_checks.checked_model_inputs(
            inputs, bert_config)))

  with tf.name_scope(schema.PREDICT_EXAMPLES_SIGNATURE):
    examples = tf1.placeholder(tf.string, [None],
                               name=schema.EXAMPLES_INPUT_KEY)
    signatures[schema.PREDICT_EXAMPLES_SIGNATURE] = _signature(
        {schema.EXAMPLES_INPUT_KEY: examples},
        model_outputs(_example_features(examples, head, bert_config)))

  if tokenizer_kind == schema.CHAR_TOKENIZER:
    with tf.name_scope(schema.PREDICT_TEXT_SIGNATURE):
      inputs, outputs = text_signature.build_text_signature(
          tokenizer, model_outputs, max_seq_length, doc_stride,
          max_text_chars)
      signatures[schema.PREDICT_TEXT_SIGNATURE] = _signature(inputs, outputs)
  return signatures


def _warmup_inputs(tokenizer, signature_names: Sequence[str]
                   ) -> Dict[str, Dict[str, np.ndarray]]:
  """One small batch per signature: {signature: {input key: numpy array}}.

  Example (vocab [PAD] [UNK] [CLS] [SEP] [MASK] 张 三 ##三): serving_default
  input_ids [[2, 5, 6, 3]], predict_text text [b"张三", b""].
  """
  ordinary = [piece for piece in tokenizer.vocab
              if schema.is_ordinary_piece(piece)]
  pieces = ordinary[:4] or [schema.UNK_TOKEN]
  ids = tokenizer.convert_tokens_to_ids(
      [schema.CLS_TOKEN] + pieces + [schema.SEP_TOKEN])
  window = {schema.INPUT_IDS: ids, schema.INPUT_MASK: [1] * len(ids),
            schema.SEGMENT_IDS: [0] * len(ids)}
  example = tf.train.Example(features=tf.train.Features(feature={
      key: tf.train.Feature(int64_list=tf.train.Int64List(value=values))
      for key, values in window.items()}))
  characters = [piece for piece in ordinary
                if len(piece) == 1 and piece.isprintable()]
  text = "".join(characters[:_WARMUP_TEXT_CHARACTERS]) or "a"
  inputs = {
      schema.SERVING_DEFAULT_SIGNATURE: {
          key: np.array([values], np.int32) for key, values in window.items()},
      schema.PREDICT_EXAMPLES_SIGNATURE: {
          schema.EXAMPLES_INPUT_KEY: np.array([example.SerializeToString()],
                                              object)},
      schema.PREDICT_TEXT_SIGNATURE: {
          schema.TEXT_INPUT_KEY: np.array([text.encode("utf-8"), b""], object)},
  }
  return {name: inputs[name] for name in signature_names}


def write_warmup_requests(path: str,
                          warmup_inputs: Mapping[str, Mapping[str, np.ndarray]],
                          model_name: str = schema.DEFAULT_MODEL_NAME) -> None:
  """Writes one `PredictionLog` (a PredictRequest) per signature to `path`.

  TF Serving replays `assets.extra/tf_serving_warmup_requests` when it loads
  a version, so the first real request does not pay for graph warm-up.

  Args:
    path: output TFRecord file.
    warmup_inputs: {signature name: {input key: numpy array}}.
    model_name: written into each request's model spec.
  """
  # Imported here: only exporting needs tensorflow-serving-api's protos.
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=g-import-not-at-top
  with tf.io.TFRecordWriter(path) as writer:
    for signature_name, inputs in warmup_inputs.items():
      request = predict_pb2.PredictRequest()
      request.model_spec.name = model_name
      request.model_spec.signature_name = signature_name
      for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())


def head_config(settings: Optional[Mapping[str, Any]],
                vocab: Mapping[str, int]) -> model_lib.HeadConfig:
  """`model.HeadConfig` from ner_config's "head" dict (None: softmax).

  Example: {"kind": "crf", "crf_constrain_bio": true} -> HeadConfig(kind="crf",
  crf_constrain_bio=True, continuation_ids=<"##" pieces and specials>).
  """
  return model_lib.HeadConfig(
      **dict(settings or {}),
      continuation_ids=model_lib.continuation_ids_from_vocab(vocab))


def _required(ner_config: Mapping[str, Any], key: str) -> Any:
  if key not in ner_config:
    raise ValueError(f"ner_config lacks {key!r} (needed for export); it has "
                     f"{sorted(ner_config)}.")
  return ner_config[key]


def _export_settings(ner_config: Mapping[str, Any]) -> Dict[str, Any]:
  """The window settings of an export, defaults filled in.

  Example: {"max_seq_length": 16, "do_lower_case": True} ->
  {"max_seq_length": 16, "doc_stride": 8, "do_lower_case": True,
   "max_text_chars": 8192}.
  """
  max_seq_length = int(_required(ner_config, "max_seq_length"))
  return {
      "max_seq_length": max_seq_length,
      "doc_stride": int(ner_config.get("doc_stride")
                        or max(1, max_seq_length // 2)),
      "do_lower_case": bool(_required(ner_config, "do_lower_case")),
      "max_text_chars": int(ner_config.get("max_text_chars")
                            or text_signature.DEFAULT_MAX_TEXT_CHARS),
  }


def _read_bert_config(checkpoint_path: str, bert_config_file: str,
                      max_seq_length: int) -> modeling.BertConfig:
  """The model's BertConfig, after checking the checkpoint and the length."""
  if not tf.io.gfile.exists(checkpoint_path + ".index"):
    raise ValueError(f"Checkpoint {checkpoint_path} does not exist (no "
                     f"{checkpoint_path}.index); pass a checkpoint prefix such "
                     "as output/model.ckpt-1000.")
  bert_config = modeling.BertConfig.from_json_file(bert_config_file)
  if max_seq_length > bert_config.max_position_embeddings:
    raise ValueError(
        f"Cannot export with max_seq_length {max_seq_length} because the BERT "
        "model was only trained up to sequence length "
        f"{bert_config.max_position_embeddings} ({bert_config_file}).")
  return bert_config


def _write_assets_extra(staging: str, full_config: Mapping[str, Any],
                        warmup_inputs: Mapping[str, Mapping[str, np.ndarray]]
                        ) -> None:
  """Writes assets.extra/ner_config.json and the warmup requests."""
  extra = os.path.join(staging, schema.ASSETS_EXTRA_DIRNAME)
  tf.io.gfile.makedirs(extra)
  with tf.io.gfile.GFile(os.path.join(extra, schema.NER_CONFIG_FILENAME),
                         "w") as writer:
    writer.write(json.dumps(full_config, indent=2, ensure_ascii=False))
  write_warmup_requests(os.path.join(extra, schema.WARMUP_FILENAME),
                        warmup_inputs)


def head_output_size(checkpoint_path: str) -> Optional[int]:
  """Outputs of a checkpoint's head (`ner_head/output_bias`), None if none.

  Example: a head trained on labels [O, B-PER, I-PER] -> 3.
  """
  for name, shape in tf.train.list_variables(checkpoint_path):
    if (name.startswith(f"{model_lib.HEAD_SCOPE}/")
        and name.endswith("output_bias")):
      return int(shape[0])
  return None


def check_label_count(checkpoint_path: str, label_names: Sequence[str],
                      labels_file: str) -> None:
  """Refuses a label list whose length is not the head's output size.

  Raises:
    ValueError: naming the labels file, both counts and the fix.
  """
  outputs = head_output_size(checkpoint_path)
  if outputs is not None and outputs != len(label_names):
    raise ValueError(
        f"{labels_file} has {len(label_names)} labels but the head of "
        f"{checkpoint_path} has {outputs} outputs: this is not the label "
        "list the model was trained with. Restore the training run's "
        "labels.txt (one label per output, in training order); nothing was "
        "exported.")


def export_model(export_dir: str, checkpoint_path: str, bert_config_file: str,
                 vocab_file: str, labels_file: str,
                 ner_config: Mapping[str, Any],
                 manifest_file: Optional[str] = None) -> str:
  """Exports a checkpoint as `<export_dir>/<next version>/` (see module doc).

  Args:
    export_dir: base directory of versions (created if needed).
    checkpoint_path: checkpoint prefix to export (e.g. `model.ckpt-1000`).
    bert_config_file: the model's `bert_config.json`.
    vocab_file: the vocabulary the model was trained with.
    labels_file: `labels.txt` of the training run (id = line number).
    ner_config: dict with at least `max_seq_length` and `do_lower_case`; also
      `head` (`model.HeadConfig.as_json()`, default softmax), `doc_stride`,
      `tokenizer` ("char", "wordpiece" or absent = detected
      from the vocab) and `max_text_chars`. Written, completed with the
      labels, tokenizer kind, signature names, inputs and outputs, and the
      model's input limits (`serving_checks.model_limits`), to
      `assets.extra/ner_config.json`.
    manifest_file: the training run's `run_manifest.json`, copied to
      `assets/` (None: none).

  Returns:
    str, the path of the new version folder.

  Raises:
    ValueError: for a missing checkpoint, too long windows or a label list
      that does not fit the head, before anything is written.
  """
  settings = _export_settings(ner_config)
  bert_config = _read_bert_config(checkpoint_path, bert_config_file,
                                  settings["max_seq_length"])
  label_names = labels_lib.read_labels_file(labels_file, gfile_io.read_bytes)
  check_label_count(checkpoint_path, label_names, labels_file)
  tokenizer = tokenization.NerTokenizer(vocab_file, settings["do_lower_case"])
  tokenizer_kind = text_signature.resolve_tokenizer_kind(ner_config,
                                                         tokenizer.vocab)
  head = head_config(ner_config.get("head"), tokenizer.vocab)

  def build_signatures():
    return build_serving_graph(
        bert_config, label_names, head, tokenizer, tokenizer_kind,
        settings["max_seq_length"], settings["doc_stride"],
        settings["max_text_chars"])

  staging = _new_staging_dir(export_dir)
  try:
    signature_def_map = saved_model_writer.save_saved_model(
        staging, checkpoint_path, vocab_file, labels_file, build_signatures,
        constant_weights=bool(ner_config.get("constant_weights")))
    signature_names = [name for name in schema.SIGNATURES
                       if name in signature_def_map]
    if manifest_file:
      tf.io.gfile.copy(manifest_file, os.path.join(
          staging, "assets", os.path.basename(manifest_file)), overwrite=True)
    full_config = dict(ner_config)
    full_config.update({
        "labels": label_names,
        "max_seq_length": settings["max_seq_length"],
        "doc_stride": settings["doc_stride"],
        "do_lower_case": settings["do_lower_case"],
        "tokenizer": tokenizer_kind,
        "max_text_chars": settings["max_text_chars"],
        **serving_checks.model_limits(bert_config),
        "checkpoint": checkpoint_path,
        "signatures": signature_names,
        "inputs": {name: sorted(signature_def_map[name].inputs)
                   for name in signature_names},
        "outputs": {name: sorted(signature_def_map[name].outputs)
                    for name in signature_names},
    })
    _write_assets_extra(staging, full_config,
                        _warmup_inputs(tokenizer, signature_names))
    version_dir = _publish(staging, export_dir)
  finally:
    if tf.io.gfile.exists(staging):
      tf.io.gfile.rmtree(staging)
  logging.info("Exported %s (signatures %s) to %s", checkpoint_path,
               ", ".join(signature_names), version_dir)
  return version_dir


def _new_staging_dir(export_dir: str) -> str:
  """A new hidden folder name in `export_dir` (created if needed) to write a
  version into; first removes the stale ones killed exports left."""
  tf.io.gfile.makedirs(export_dir)
  for path in export_versions.remove_stale_staging(export_dir, tf.io.gfile):
    logging.warning("Removed %s, left by an export that did not finish.",
                    path)
  return os.path.join(export_dir,
                      f"{export_versions.STAGING_PREFIX}{uuid.uuid4().hex}")


def _publish(staging: str, export_dir: str, attempts: int = 100) -> str:
  """Renames `staging` to the next free version; never overwrites one."""
  for _ in range(attempts):
    version = export_versions.next_version(export_dir, tf.io.gfile)
    version_dir = os.path.join(export_dir, str(version))
    try:
      tf.io.gfile.rename(staging, version_dir, overwrite=False)
      return version_dir
    except (tf.errors.AlreadyExistsError, tf.errors.FailedPreconditionError,
            OSError):
      if not tf.io.gfile.exists(version_dir):
        raise
      # A concurrent export took this version number; take the next one.
  raise ValueError(f"Could not find a free version number in {export_dir} "
                   f"after {attempts} tries.")


def export_best(best_export_dir: str, eval_results: Mapping[str, Any],
                checkpoint_path: str, bert_config_file: str, vocab_file: str,
                labels_file: str, ner_config: Mapping[str, Any],
                metric: str = schema.BEST_EXPORT_METRIC,
                manifest_file: Optional[str] = None) -> Optional[str]:
  """Exports `checkpoint_path` when its eval metric beats every earlier one.

  The best score so far is kept in `<best_export_dir>/best_export.json`
  ({"metric", "value", "checkpoint", "version_dir"}); a checkpoint is exported
  (as the next version of `best_export_dir`, via `export_model`) only when
  its value is strictly higher, so the highest version is always the best
  model. Call it after each evaluation.

  Args:
    best_export_dir: e.g. `<output_dir>/export_best`.
    eval_results: dict from `Estimator.evaluate` (holds `metric`).
    checkpoint_path, bert_config_file, vocab_file, labels_file, ner_config,
    manifest_file: as for `export_model`.
    metric: key of `eval_results` to maximise.

  Returns:
    The new version folder, or None when the checkpoint is not better.
  """
  if metric not in eval_results:
    raise ValueError(f"Eval results have no {metric!r} to pick the best model "
                     f"by; they have {sorted(eval_results)}.")
  value = float(eval_results[metric])
  record_path = os.path.join(best_export_dir,
                             schema.BEST_EXPORT_RECORD_FILENAME)
  if tf.io.gfile.exists(record_path):
    with tf.io.gfile.GFile(record_path) as reader:
      best = json.load(reader)
    if best.get("metric") == metric and value <= float(best["value"]):
      logging.info("Not exporting %s: %s %.4f <= best %.4f (%s)",
                   checkpoint_path, metric, value, best["value"],
                   best["version_dir"])
      return None
  version_dir = export_model(best_export_dir, checkpoint_path,
                             bert_config_file, vocab_file, labels_file,
                             ner_config, manifest_file)
  with tf.io.gfile.GFile(record_path, "w") as writer:
    writer.write(json.dumps({"metric": metric, "value": value,
                             "checkpoint": checkpoint_path,
                             "version_dir": version_dir}, indent=2))
  logging.info("New best model (%s %.4f) exported to %s", metric, value,
               version_dir)
  return version_dir
