"""SavedModel export for TensorFlow Serving.

Layout written by `export_model` (names from `trainer.schema`)::

    <export_dir>/<version>/saved_model.pb          version = 1 + highest existing
    <export_dir>/<version>/variables/...
    <export_dir>/<version>/assets/vocab.txt
    <export_dir>/<version>/assets/labels.txt
    <export_dir>/<version>/assets.extra/ner_config.json
    <export_dir>/<version>/assets.extra/tf_serving_warmup_requests

A version is written under a hidden temporary name in `export_dir` and renamed
into place, so TF Serving never sees a half-written version and an existing
version is never overwritten.

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
                      (only for character-level models, see below)

For serving_default and predict_examples only positions holding the first
word-piece of a word carry a meaningful tag; the client finds them with the
same feature conversion as training (`trainer.features.convert_sentence`).
Heads that decode per word (CRF) need to know those positions in the graph:
predict_examples takes them from `word_positions` (exact; send it for every
example of a request or for none), serving_default derives them from the ids
(`model.word_start_mask`: a word starts at every piece that is not "##..." or
a special token, so a word that is all [UNK] is not seen as one there).

predict_text does the whole character-level pipeline in the graph with core
TensorFlow ops only (the stock TF Serving binary has no tensorflow-text ops):

    "张三 在北京"  -> characters 张 三 ␠ 在 北 京   (tf.strings.unicode_split)
                  -> tokens     张 三 在 北 京       (whitespace is no token)
                  -> ids via a character table       ([UNK] when absent)
                  -> windows [CLS] ... [SEP] of at most max_seq_length, the
                     same windows and best-window rule as training
                     (`features.plan_windows`, `features.best_window_per_word`)
                  -> one tag per character; whitespace and padding get tag ""
                     (`schema.NO_TOKEN_TAG`), label id -1 and score 0.

Sentences longer than `max_seq_length - 2` characters are therefore split
into windows, not rejected; only sentences over `max_text_chars` characters
(ner_config.json) fail with INVALID_ARGUMENT. The character table is computed
at export time with the training tokenizer (`NerTokenizer.tokenize_word` of
each Basic Multilingual Plane character), so lower-casing and accent stripping
match training exactly for those characters; the graph lower-cases with
`tf.strings.lower(encoding="utf-8")` (ICU) before the lookup. Limits: a
character outside the BMP is looked up as is (no lower-casing or accent
stripping; it is [UNK] unless the vocab holds it), and the rare character that
BERT splits into several pieces is represented by its first piece only.
"""

import json
import os
import re
import tempfile
import uuid

from absl import logging
import numpy as np
import tensorflow as tf

from trainer import gfile_io
from trainer import labels as labels_lib
from trainer import model as model_lib
from trainer import schema
from trainer import tokenization
from trainer.tf_compat import modeling

tf1 = tf.compat.v1

# Longest sentence (in characters) predict_text accepts; longer ones get
# INVALID_ARGUMENT. Bounds the [batch, characters, windows] best-window matrix.
DEFAULT_MAX_TEXT_CHARS = 8192
# A vocab is character-level when at least this fraction of its ordinary
# (non-special, non-"##") entries are single characters (Chinese BERT vocabs
# and the from-scratch sample vocab are; English vocabs are around 0.03).
CHARACTER_VOCAB_FRACTION = 0.5
# Characters that appear in the warmup requests of predict_text.
_WARMUP_TEXT_CHARACTERS = 6
_BMP_END = 0x10000
_SURROGATES = range(0xD800, 0xE000)
# Characters that are not tokens in predict_text: what Python's str.isspace()
# (and so `readers.default_word_splitter`) treats as whitespace, in RE2 syntax.
_WHITESPACE_PATTERN = r"[\s\p{Z}\x{1c}-\x{1f}\x{85}]"


def next_version(export_dir):
  """1 + the highest integer version folder in `export_dir` (1 when none)."""
  names = (tf.io.gfile.listdir(export_dir) if tf.io.gfile.isdir(export_dir)
           else [])
  versions = [int(name.rstrip("/")) for name in names
              if re.fullmatch(r"\d+/?", name)]
  return max(versions, default=0) + 1


def is_character_vocab(vocab):
  """True when most ordinary entries of `vocab` (piece -> id) are characters.

  Example: a Chinese BERT vocab ("的", "##的", "[CLS]", ...) -> True;
  an English one ("the", "##s", "[CLS]", ...) -> False.
  """
  ordinary = [piece for piece in vocab
              if piece not in schema.SPECIAL_TOKENS
              and not piece.startswith("##")
              and not (piece.startswith("[") and piece.endswith("]"))]
  if not ordinary:
    return False
  single = sum(1 for piece in ordinary if len(piece) == 1)
  return single / len(ordinary) >= CHARACTER_VOCAB_FRACTION


def resolve_tokenizer_kind(ner_config, vocab):
  """`ner_config["tokenizer"]` when set ("char"/"wordpiece"), else detected."""
  kind = ner_config.get("tokenizer")
  if kind in (None, "", "auto"):
    return (schema.CHAR_TOKENIZER if is_character_vocab(vocab)
            else schema.WORDPIECE_TOKENIZER)
  allowed = (schema.CHAR_TOKENIZER, schema.WORDPIECE_TOKENIZER)
  if kind not in allowed:
    raise ValueError("ner_config tokenizer=%r is not one of %s (or auto)."
                     % (kind, ", ".join(allowed)))
  return kind


def character_table(tokenizer):
  """Maps each character the graph may look up to its training-time piece id.

  Args:
    tokenizer: `trainer.tokenization.NerTokenizer`.

  Returns:
    dict str (one character, already lower-cased when the tokenizer lower-cases)
    -> int id. Characters absent from it are [UNK].

  Example (uncased vocab holding "e" but not "é"): {"e": 7, "é": 7, ...}: the
  graph lower-cases "É" to "é", which BERT's accent stripping also maps to "e".
  """
  unk = [schema.UNK_TOKEN]
  table = {}
  for codepoint in range(_BMP_END):
    if codepoint in _SURROGATES:
      continue
    character = chr(codepoint)
    if tokenizer.do_lower_case and character.lower() != character:
      continue  # never looked up: the graph lower-cases first
    pieces = tokenizer.tokenize_word(character)
    if pieces != unk:
      table[character] = tokenizer.convert_tokens_to_ids(pieces[:1])[0]
  for piece, piece_id in tokenizer.vocab.items():
    if len(piece) == 1 and ord(piece) >= _BMP_END:
      table.setdefault(piece, piece_id)
  return table


def text_features(text, table, cls_id, sep_id, do_lower_case, max_seq_length,
                  doc_stride, max_text_chars):
  """In-graph character tokenization and windowing for predict_text.

  Args:
    text: string [B], UTF-8 sentences.
    table: lookup table character -> int64 id ([UNK] by default).
    cls_id, sep_id: int ids of [CLS] and [SEP].
    do_lower_case: lower-case characters before the lookup.
    max_seq_length: positions per window including [CLS] and [SEP].
    doc_stride: tokens between window starts (as in training).
    max_text_chars: longest accepted sentence, in characters.

  Returns:
    (features: int32 [NW, T] input_ids, input_mask, segment_ids and
       word_positions over the NW windows of the whole batch, T = longest
       window + 2;
     layout: dict of tensors `select_text_outputs` needs).

  Example (max_seq_length 5, doc_stride 2, so 3 tokens per window, stride 2):
  "ab cde" has 6 characters and 5 tokens (the space is none), so windows
  [CLS] a b c [SEP] and [CLS] c d e [SEP], exactly as
  `features.plan_windows([1] * 5, 3, 2)` gives.
  """
  characters = tf.strings.unicode_split(text, "UTF-8", errors="strict")
  num_chars = tf.cast(characters.row_lengths(), tf.int32)          # [B]
  check = tf.debugging.assert_less_equal(
      num_chars, tf.constant(max_text_chars, tf.int32),
      message="predict_text: a sentence is longer than max_text_chars=%d "
              "characters; split it, or send windows to serving_default "
              "(the client does)" % max_text_chars)
  with tf.control_dependencies([check]):
    is_token = tf.logical_not(tf.strings.regex_full_match(
        characters.flat_values, _WHITESPACE_PATTERN))
  is_token = characters.with_flat_values(is_token)                  # [B, (C)]
  tokens = tf.ragged.boolean_mask(characters, is_token)             # [B, (N)]
  keys = tokens.flat_values
  if do_lower_case:
    keys = tf.strings.lower(keys, encoding="utf-8")
  token_ids = tokens.with_flat_values(tf.cast(table.lookup(keys), tf.int32))
  num_tokens = tf.cast(tokens.row_lengths(), tf.int32)              # [B]

  max_pieces = max_seq_length - 2
  stride = min(doc_stride, max_pieces)
  # features.plan_windows with one piece per token: starts 0, s, 2s, ...
  num_windows = tf.where(
      num_tokens <= max_pieces, tf.ones_like(num_tokens),
      (num_tokens - max_pieces + stride - 1) // stride + 1)         # [B]
  batch_size = tf.shape(text)[0]
  window_sentence = tf.repeat(tf.range(batch_size), num_windows)    # [NW]
  window_start = tf.ragged.range(num_windows).flat_values * stride  # [NW]
  window_length = tf.minimum(
      max_pieces, tf.gather(num_tokens, window_sentence) - window_start)
  positions = tf.reduce_max(tf.concat([window_length, [0]], 0)) + 2  # T
  # One extra zero column so gathers stay in range for empty batches/texts.
  dense_ids = tf.concat([token_ids.to_tensor(0),
                         tf.zeros([batch_size, 1], tf.int32)], 1)   # [B, N+1]
  position = tf.range(positions)[tf.newaxis, :]                     # [1, T]
  token_index = tf.clip_by_value(window_start[:, tf.newaxis] + position - 1,
                                 0, tf.shape(dense_ids)[1] - 1)     # [NW, T]
  window_ids = tf.gather_nd(dense_ids, tf.stack(
      [tf.broadcast_to(window_sentence[:, tf.newaxis], tf.shape(token_index)),
       token_index], -1))                                           # [NW, T]
  length = window_length[:, tf.newaxis]
  # tf.equal, not ==: in a v1 graph `==` compares tensor identity.
  input_ids = tf.where(
      tf.equal(position, 0), cls_id,
      tf.where(position <= length, window_ids,
               tf.where(tf.equal(position, length + 1), sep_id, 0)))
  is_word = tf.logical_and(position >= 1, position <= length)
  features = {
      schema.INPUT_IDS: input_ids,
      schema.INPUT_MASK: tf.cast(position <= length + 1, tf.int32),
      schema.SEGMENT_IDS: tf.zeros_like(input_ids),
      # Every character token is a word (first piece) at index start + p - 1.
      schema.WORD_POSITIONS: tf.where(
          is_word, window_start[:, tf.newaxis] + position - 1,
          schema.NO_WORD),
  }
  layout = {"num_chars": num_chars, "is_token": is_token,
            "num_tokens": num_tokens, "num_windows": num_windows,
            "max_pieces": max_pieces, "stride": stride}
  return features, layout


def select_text_outputs(window_outputs, layout):
  """Picks each token's output from its best window, then maps to characters.

  The best window is `features.best_window_per_word`'s: most context
  min(left, right) plus 0.01 * window length, ties to the earlier window
  (computed here in integers: 100 * context + length, then window order).

  Args:
    window_outputs: {tags string, label_ids int32, scores float32} [NW, T].
    layout: from `text_features`.

  Returns:
    {tags string [B, C], label_ids int32 [B, C], scores float32 [B, C],
     lengths int32 [B]}; whitespace and padding positions hold
     `schema.NO_TOKEN_TAG`, `schema.PAD_LABEL_ID` and 0.
  """
  num_tokens, num_windows = layout["num_tokens"], layout["num_windows"]
  max_pieces, stride = layout["max_pieces"], layout["stride"]
  max_tokens = tf.reduce_max(tf.concat([num_tokens, [0]], 0))
  max_windows = tf.reduce_max(tf.concat([num_windows, [1]], 0))
  token = tf.range(max_tokens)[tf.newaxis, :, tf.newaxis]           # [1, N, 1]
  window = tf.range(max_windows)[tf.newaxis, tf.newaxis, :]         # [1, 1, W]
  start = window * stride
  end = tf.minimum(start + max_pieces, num_tokens[:, tf.newaxis, tf.newaxis])
  valid = ((window < num_windows[:, tf.newaxis, tf.newaxis])
           & (start <= token) & (token < end))                      # [B, N, W]
  score = tf.cast(100 * tf.minimum(token - start, end - 1 - token)
                  + (end - start), tf.int64)
  score = (score * tf.cast(max_windows + 1, tf.int64)
           + tf.cast(max_windows - window, tf.int64))
  score = tf.where(valid, score, tf.constant(-1, tf.int64))
  best = tf.argmax(score, axis=2, output_type=tf.int32)             # [B, N]
  first_window = tf.cumsum(num_windows, exclusive=True)             # [B]
  total_windows = tf.reduce_sum(num_windows)
  flat_window = tf.clip_by_value(first_window[:, tf.newaxis] + best, 0,
                                 tf.maximum(total_windows - 1, 0))
  positions = tf.shape(window_outputs[schema.OUTPUT_TAGS])[1]
  position = tf.clip_by_value(token[:, :, 0] - best * stride + 1, 0,
                              tf.maximum(positions - 1, 0))
  index = tf.stack([flat_window, position], -1)                     # [B, N, 2]

  is_token = layout["is_token"].to_tensor(False)                    # [B, C]
  char_token = tf.clip_by_value(
      tf.cumsum(tf.cast(is_token, tf.int32), axis=1) - 1, 0, max_tokens)
  batch_size = tf.shape(num_tokens)[0]
  pads = {schema.OUTPUT_TAGS: schema.NO_TOKEN_TAG,
          schema.OUTPUT_LABEL_IDS: schema.PAD_LABEL_ID,
          schema.OUTPUT_SCORES: 0.0}
  outputs = {}
  for key, pad in pads.items():
    values = window_outputs[key]
    per_token = tf.gather_nd(values, index)                         # [B, N]
    pad_column = tf.fill([batch_size, 1], tf.constant(pad, values.dtype))
    per_token = tf.concat([per_token, pad_column], 1)               # [B, N+1]
    per_char = tf.gather(per_token, char_token, axis=1, batch_dims=1)
    outputs[key] = tf.where(is_token, per_char,
                            tf.constant(pad, values.dtype))
  outputs[schema.OUTPUT_LENGTHS] = layout["num_chars"]
  return outputs


def _signature(inputs, outputs):
  return tf1.saved_model.predict_signature_def(inputs=inputs, outputs=outputs)


def build_serving_graph(bert_config, label_names, head, tokenizer,
                        tokenizer_kind, max_seq_length, doc_stride,
                        max_text_chars):
  """Builds every signature in the default graph, sharing one set of variables.

  Args:
    bert_config: `modeling.BertConfig`.
    label_names: list of str, index = label id.
    head: `model.HeadConfig` the checkpoint was trained with.
    tokenizer: `tokenization.NerTokenizer` of the training vocab.
    tokenizer_kind: `schema.CHAR_TOKENIZER` adds predict_text.
    max_seq_length, doc_stride, max_text_chars: see `text_features`.

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
        inputs, model_outputs(inputs))

  with tf.name_scope(schema.PREDICT_EXAMPLES_SIGNATURE):
    examples = tf1.placeholder(tf.string, [None],
                               name=schema.EXAMPLES_INPUT_KEY)
    # The training TFRecords' spec: unpadded int64 lists, padded here to the
    # longest example of the batch. word_positions is optional: heads that
    # predict per word (CRF) use it to find first pieces exactly.
    keys = schema.MODEL_INPUT_KEYS + (schema.WORD_POSITIONS,)
    parsed = tf.io.parse_example(examples, {
        key: tf.io.FixedLenSequenceFeature(
            [], tf.int64, allow_missing=True,
            default_value=schema.PADDING_VALUES[key])
        for key in keys})
    features = {key: tf.cast(parsed[key], tf.int32) for key in keys}
    given = features[schema.WORD_POSITIONS]
    derived = tf.where(
        model_lib.word_start_mask(
            {key: features[key] for key in schema.MODEL_INPUT_KEYS},
            head.continuation_ids), 0, schema.NO_WORD)
    features[schema.WORD_POSITIONS] = tf.cond(
        tf.equal(tf.shape(given)[1], tf.shape(derived)[1]),
        lambda: given, lambda: derived)
    signatures[schema.PREDICT_EXAMPLES_SIGNATURE] = _signature(
        {schema.EXAMPLES_INPUT_KEY: examples}, model_outputs(features))

  if tokenizer_kind == schema.CHAR_TOKENIZER:
    with tf.name_scope(schema.PREDICT_TEXT_SIGNATURE):
      text = tf1.placeholder(tf.string, [None], name=schema.TEXT_INPUT_KEY)
      table_items = character_table(tokenizer)
      unk_id, cls_id, sep_id = tokenizer.convert_tokens_to_ids(
          [schema.UNK_TOKEN, schema.CLS_TOKEN, schema.SEP_TOKEN])
      table = tf1.lookup.StaticHashTable(
          tf1.lookup.KeyValueTensorInitializer(
              list(table_items), np.array(list(table_items.values()),
                                          np.int64),
              key_dtype=tf.string, value_dtype=tf.int64),
          default_value=unk_id, name="character_table")
      features, layout = text_features(
          text, table, cls_id, sep_id, tokenizer.do_lower_case,
          max_seq_length, doc_stride, max_text_chars)
      outputs = select_text_outputs(model_outputs(features), layout)
      signatures[schema.PREDICT_TEXT_SIGNATURE] = _signature(
          {schema.TEXT_INPUT_KEY: text}, outputs)
  return signatures


def _warmup_inputs(tokenizer, signature_names):
  """One small batch per signature: {signature: {input key: numpy array}}."""
  ordinary = [piece for piece in tokenizer.vocab
              if piece not in schema.SPECIAL_TOKENS and not piece.startswith("##")
              and not (piece.startswith("[") and piece.endswith("]"))]
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


def write_warmup_requests(path, warmup_inputs,
                          model_name=schema.DEFAULT_MODEL_NAME):
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


def head_config(settings, vocab):
  """`model.HeadConfig` from ner_config's "head" dict (None: softmax).

  Example: {"kind": "crf", "crf_constrain_bio": true} -> HeadConfig(kind="crf",
  crf_constrain_bio=True, continuation_ids=<"##" pieces and specials>).
  """
  return model_lib.HeadConfig(
      **dict(settings or {}),
      continuation_ids=model_lib.continuation_ids_from_vocab(vocab))


def _required(ner_config, key):
  if key not in ner_config:
    raise ValueError("ner_config lacks %r (needed for export); it has %s."
                     % (key, sorted(ner_config)))
  return ner_config[key]


def export_model(export_dir, checkpoint_path, bert_config_file, vocab_file,
                 labels_file, ner_config):
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
      labels, tokenizer kind and signature names, inputs and outputs, to
      `assets.extra/ner_config.json`.

  Returns:
    str, the path of the new version folder.
  """
  max_seq_length = int(_required(ner_config, "max_seq_length"))
  do_lower_case = bool(_required(ner_config, "do_lower_case"))
  doc_stride = int(ner_config.get("doc_stride") or max(1, max_seq_length // 2))
  max_text_chars = int(ner_config.get("max_text_chars")
                       or DEFAULT_MAX_TEXT_CHARS)
  if not tf.io.gfile.exists(checkpoint_path + ".index"):
    raise ValueError("Checkpoint %s does not exist (no %s.index); pass a "
                     "checkpoint prefix such as output/model.ckpt-1000."
                     % (checkpoint_path, checkpoint_path))
  bert_config = modeling.BertConfig.from_json_file(bert_config_file)
  if max_seq_length > bert_config.max_position_embeddings:
    raise ValueError(
        "Cannot export with max_seq_length %d because the BERT model was only "
        "trained up to sequence length %d (%s)."
        % (max_seq_length, bert_config.max_position_embeddings,
           bert_config_file))
  label_names = labels_lib.read_labels_file(labels_file, gfile_io.read_bytes)
  tokenizer = tokenization.NerTokenizer(vocab_file, do_lower_case)
  tokenizer_kind = resolve_tokenizer_kind(ner_config, tokenizer.vocab)
  head = head_config(ner_config.get("head"), tokenizer.vocab)

  tf.io.gfile.makedirs(export_dir)
  # Hidden, non-numeric names: TF Serving ignores them while they are written.
  staging = os.path.join(export_dir, ".tmp-export-%s" % uuid.uuid4().hex)
  assets_staging = tempfile.mkdtemp(prefix="ner_export_assets_")
  try:
    # Assets keep their base names, so stage them under canonical ones.
    asset_paths = []
    for source, name in ((vocab_file, schema.VOCAB_FILENAME),
                         (labels_file, schema.LABELS_FILENAME)):
      target = os.path.join(assets_staging, name)
      tf.io.gfile.copy(source, target, overwrite=True)
      asset_paths.append(target)
    with tf.Graph().as_default() as graph:
      signature_def_map = build_serving_graph(
          bert_config, label_names, head, tokenizer, tokenizer_kind,
          max_seq_length, doc_stride, max_text_chars)
      for path in asset_paths:
        tf1.add_to_collection(tf1.GraphKeys.ASSET_FILEPATHS, tf.constant(path))
      saver = tf1.train.Saver(tf1.global_variables())
      # Runs at load time (TF Serving and tf.saved_model.load): fills the
      # predict_text character table.
      main_op = tf1.tables_initializer()
      with tf1.Session(graph=graph) as session:
        saver.restore(session, checkpoint_path)
        builder = tf1.saved_model.Builder(staging)
        builder.add_meta_graph_and_variables(
            session, [tf1.saved_model.tag_constants.SERVING],
            signature_def_map=signature_def_map,
            assets_collection=tf1.get_collection(
                tf1.GraphKeys.ASSET_FILEPATHS),
            main_op=main_op,
            strip_default_attrs=True)
        builder.save()

    signature_names = [name for name in schema.SIGNATURES
                       if name in signature_def_map]
    full_config = dict(ner_config)
    full_config.update({
        "labels": label_names,
        "max_seq_length": max_seq_length,
        "doc_stride": doc_stride,
        "do_lower_case": do_lower_case,
        "tokenizer": tokenizer_kind,
        "max_text_chars": max_text_chars,
        "checkpoint": checkpoint_path,
        "signatures": signature_names,
        "inputs": {name: sorted(signature_def_map[name].inputs)
                   for name in signature_names},
        "outputs": {name: sorted(signature_def_map[name].outputs)
                    for name in signature_names},
    })
    extra = os.path.join(staging, schema.ASSETS_EXTRA_DIRNAME)
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, schema.NER_CONFIG_FILENAME),
                           "w") as writer:
      writer.write(json.dumps(full_config, indent=2, ensure_ascii=False))
    write_warmup_requests(os.path.join(extra, schema.WARMUP_FILENAME),
                          _warmup_inputs(tokenizer, signature_names))
    version_dir = _publish(staging, export_dir)
  finally:
    tf.io.gfile.rmtree(assets_staging)
    if tf.io.gfile.exists(staging):
      tf.io.gfile.rmtree(staging)
  logging.info("Exported %s (signatures %s) to %s", checkpoint_path,
               ", ".join(signature_names), version_dir)
  return version_dir


def _publish(staging, export_dir, attempts=100):
  """Renames `staging` to the next free version; never overwrites one."""
  for _ in range(attempts):
    version_dir = os.path.join(export_dir, str(next_version(export_dir)))
    try:
      tf.io.gfile.rename(staging, version_dir, overwrite=False)
      return version_dir
    except (tf.errors.AlreadyExistsError, tf.errors.FailedPreconditionError,
            OSError):
      if not tf.io.gfile.exists(version_dir):
        raise
      # A concurrent export took this version number; take the next one.
  raise ValueError("Could not find a free version number in %s after %d "
                   "tries." % (export_dir, attempts))


def export_best(best_export_dir, eval_results, checkpoint_path,
                bert_config_file, vocab_file, labels_file, ner_config,
                metric=schema.BEST_EXPORT_METRIC):
  """Exports `checkpoint_path` when its eval metric beats every earlier one.

  The best score so far is kept in `<best_export_dir>/best_export.json`
  ({"metric", "value", "checkpoint", "version_dir"}); a checkpoint is exported
  (as the next version of `best_export_dir`, via `export_model`) only when
  its value is strictly higher, so the highest version is always the best
  model. Call it after each evaluation.

  Args:
    best_export_dir: e.g. `<output_dir>/export_best`.
    eval_results: dict from `Estimator.evaluate` (holds `metric`).
    checkpoint_path, bert_config_file, vocab_file, labels_file, ner_config:
      as for `export_model`.
    metric: key of `eval_results` to maximise.

  Returns:
    The new version folder, or None when the checkpoint is not better.
  """
  if metric not in eval_results:
    raise ValueError("Eval results have no %r to pick the best model by; "
                     "they have %s." % (metric, sorted(eval_results)))
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
                             ner_config)
  with tf.io.gfile.GFile(record_path, "w") as writer:
    writer.write(json.dumps({"metric": metric, "value": value,
                             "checkpoint": checkpoint_path,
                             "version_dir": version_dir}, indent=2))
  logging.info("New best model (%s %.4f) exported to %s", metric, value,
               version_dir)
  return version_dir
