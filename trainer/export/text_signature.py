"""predict_text's in-graph character tokenizer: raw text in, per-character tags.

`trainer.export.exporter` adds the predict_text signature to character-level
exports with `build_text_signature`. It does the whole character-level pipeline
in the graph with core TensorFlow ops only (the stock TF Serving binary has no
tensorflow-text ops)::

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
(ner_config.json) fail with INVALID_ARGUMENT naming the row and its length
(`serving_checks.graph_check`); one over 4 * max_text_chars bytes fails
before it is split into characters, so a huge text costs no more than its
length. The character table is computed
at export time with the training tokenizer (`NerTokenizer.tokenize_word` of
each Basic Multilingual Plane character), so lower-casing and accent stripping
match training exactly for those characters; the graph lower-cases with
`tf.strings.lower(encoding="utf-8")` (ICU) before the lookup. Limits: a
character outside the BMP is looked up as is (no lower-casing or accent
stripping; it is [UNK] unless the vocab holds it), and the rare character that
BERT splits into several pieces is represented by its first piece only.

Shapes: B = sentences, C = characters, N = tokens (non-whitespace
characters), NW = windows of the whole batch, T = positions per window,
W = most windows of one sentence.
"""

from typing import Callable, Dict, Mapping, Tuple

import numpy as np
import tensorflow as tf

from trainer import schema
from trainer.export import serving_checks

tf1 = tf.compat.v1

# Longest sentence (in characters) predict_text accepts; longer ones get
# INVALID_ARGUMENT. Bounds the [batch, characters, windows] best-window matrix.
DEFAULT_MAX_TEXT_CHARS = 8192
# A vocab is character-level when at least this fraction of its ordinary
# entries (`schema.is_ordinary_piece`) are single characters (Chinese BERT
# vocabs and the from-scratch sample vocab are; English vocabs are around 0.03).
CHARACTER_VOCAB_FRACTION = 0.5
_BMP_END = 0x10000
_SURROGATES = range(0xD800, 0xE000)
# Characters that are not tokens in predict_text: what Python's str.isspace()
# (and so `readers.default_word_splitter`) treats as whitespace, in RE2 syntax.
_WHITESPACE_PATTERN = r"[\s\p{Z}\x{1c}-\x{1f}\x{85}]"

Tensors = Dict[str, tf.Tensor]


def is_character_vocab(vocab: Mapping[str, int]) -> bool:
  """True when most ordinary entries of `vocab` (piece -> id) are characters.

  Example: a Chinese BERT vocab ("的", "##的", "[CLS]", ...) -> True;
  an English one ("the", "##s", "[CLS]", ...) -> False.
  """
  ordinary = [piece for piece in vocab if schema.is_ordinary_piece(piece)]
  if not ordinary:
    return False
  single = sum(1 for piece in ordinary if len(piece) == 1)
  return single / len(ordinary) >= CHARACTER_VOCAB_FRACTION


def resolve_tokenizer_kind(ner_config: Mapping[str, object],
                           vocab: Mapping[str, int]) -> str:
  """`ner_config["tokenizer"]` when set ("char"/"wordpiece"), else detected.

  Example: ({}, Chinese vocab) -> "char"; ({"tokenizer": "wordpiece"},
  Chinese vocab) -> "wordpiece"; ({"tokenizer": "bpe"}, ...) -> ValueError.
  """
  kind = ner_config.get("tokenizer")
  if kind in (None, "", "auto"):
    return (schema.CHAR_TOKENIZER if is_character_vocab(vocab)
            else schema.WORDPIECE_TOKENIZER)
  allowed = (schema.CHAR_TOKENIZER, schema.WORDPIECE_TOKENIZER)
  if kind not in allowed:
    raise ValueError(f"ner_config tokenizer={kind!r} is not one of "
                     f"{', '.join(allowed)} (or auto).")
  return kind


def character_table(tokenizer) -> Dict[str, int]:
  """Maps each character the graph may look up to its training-time piece id.

  Args:
    tokenizer: `trainer.features.tokenization.NerTokenizer`.

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


def _text_length_check(lengths: tf.Tensor, unit: str, limit: int,
                       max_text_chars: int, name: str) -> tf.Operation:
  """Fails naming the first sentence whose length (int32 [B]) is over limit.

  Example: lengths [3, 9000] in characters, limit 8192 -> "predict_text:
  text row 1 has 9000 characters; max_text_chars=8192 allows at most 8192
  characters; split it, ...".
  """

  def explain():
    row = tf.argmax(tf.cast(lengths > limit, tf.int32), output_type=tf.int32)
    template = (f"predict_text: text row {{}} has {{}} {unit}; max_text_chars="
                f"{max_text_chars} allows at most {limit} {unit}; split it, or "
                "send windows to serving_default (the client does)")
    return tf.strings.format(template, (row, tf.gather(lengths, row)))

  return serving_checks.graph_check(tf.reduce_all(lengths <= limit),
                                    explain, name)


def _character_tokens(text: tf.Tensor, table, do_lower_case: bool,
                      max_text_chars: int
                      ) -> Tuple[tf.Tensor, tf.RaggedTensor, tf.RaggedTensor]:
  """Splits sentences into characters and looks up the non-whitespace ones.

  A sentence over `max_text_chars` characters fails with INVALID_ARGUMENT;
  one over 4 * max_text_chars bytes (so surely too long) fails before it is
  split, so a huge text costs no per-character tensors.

  Returns:
    (num_chars int32 [B], is_token bool ragged [B, (C)],
     token_ids int32 ragged [B, (N)]).

  Example: ["a b"] with table {"a": 7} (default 1) -> ([3],
  [[True, False, True]], [[7, 1]]).
  """
  byte_check = _text_length_check(
      tf.strings.length(text), "bytes", 4 * max_text_chars, max_text_chars,
      "check_text_bytes")
  characters = tf.strings.unicode_split(
      serving_checks.checked(text, [byte_check]), "UTF-8", errors="strict")
  num_chars = tf.cast(characters.row_lengths(), tf.int32)          # [B]
  char_check = _text_length_check(num_chars, "characters", max_text_chars,
                                  max_text_chars, "check_text_characters")
  with tf.control_dependencies([char_check]):
    is_token = tf.logical_not(tf.strings.regex_full_match(
        characters.flat_values, _WHITESPACE_PATTERN))
  is_token = characters.with_flat_values(is_token)                  # [B, (C)]
  tokens = tf.ragged.boolean_mask(characters, is_token)             # [B, (N)]
  keys = tokens.flat_values
  if do_lower_case:
    keys = tf.strings.lower(keys, encoding="utf-8")
  token_ids = tokens.with_flat_values(tf.cast(table.lookup(keys), tf.int32))
  return num_chars, is_token, token_ids


def _window_features(token_ids: tf.RaggedTensor, num_tokens: tf.Tensor,
                     num_windows: tf.Tensor, stride: int, max_pieces: int,
                     cls_id: int, sep_id: int) -> Tensors:
  """Cuts each sentence's token ids into [CLS] ... [SEP] windows.

  Args:
    token_ids: int32 ragged [B, (N)].
    num_tokens: int32 [B], row lengths of `token_ids`.
    num_windows: int32 [B], windows per sentence (at least 1).
    stride: tokens between window starts.
    max_pieces: tokens per window (max_seq_length - 2).
    cls_id, sep_id: ids of [CLS] and [SEP].

  Returns:
    input_ids, input_mask, segment_ids, word_positions: int32 [NW, T],
    T = longest window + 2; windows of sentence 0 first, then sentence 1...

  Example (stride 2, max_pieces 3): token ids [[5, 6, 7, 8]] -> input_ids
  [[CLS, 5, 6, 7, SEP], [CLS, 7, 8, SEP, 0]], word_positions
  [[-1, 0, 1, 2, -1], [-1, 2, 3, -1, -1]].
  """
  batch_size = tf.shape(num_tokens)[0]
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
  return {
      schema.INPUT_IDS: input_ids,
      schema.INPUT_MASK: tf.cast(position <= length + 1, tf.int32),
      schema.SEGMENT_IDS: tf.zeros_like(input_ids),
      # Every character token is a word (first piece) at index start + p - 1.
      schema.WORD_POSITIONS: tf.where(
          is_word, window_start[:, tf.newaxis] + position - 1,
          schema.NO_WORD),
  }


def text_features(text: tf.Tensor, table, cls_id: int, sep_id: int,
                  do_lower_case: bool, max_seq_length: int, doc_stride: int,
                  max_text_chars: int) -> Tuple[Tensors, Dict[str, object]]:
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
  num_chars, is_token, token_ids = _character_tokens(
      text, table, do_lower_case, max_text_chars)
  num_tokens = tf.cast(token_ids.row_lengths(), tf.int32)           # [B]
  max_pieces = max_seq_length - 2
  stride = min(doc_stride, max_pieces)
  # features.plan_windows with one piece per token: starts 0, s, 2s, ...
  num_windows = tf.where(
      num_tokens <= max_pieces, tf.ones_like(num_tokens),
      (num_tokens - max_pieces + stride - 1) // stride + 1)         # [B]
  features = _window_features(token_ids, num_tokens, num_windows, stride,
                              max_pieces, cls_id, sep_id)
  layout = {"num_chars": num_chars, "is_token": is_token,
            "num_tokens": num_tokens, "num_windows": num_windows,
            "max_pieces": max_pieces, "stride": stride}
  return features, layout


def _best_window_positions(layout: Mapping[str, object],
                           positions: tf.Tensor) -> tf.Tensor:
  """[window row, position] of each token in its best window, int32 [B, N, 2].

  The best window is `features.best_window_per_word`'s: most context
  min(left, right) plus 0.01 * window length, ties to the earlier window
  (computed here in integers: 100 * context + length, then window order).
  `positions` (T) bounds the position index.
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
  position = tf.clip_by_value(token[:, :, 0] - best * stride + 1, 0,
                              tf.maximum(positions - 1, 0))
  return tf.stack([flat_window, position], -1)                      # [B, N, 2]


def select_text_outputs(window_outputs: Mapping[str, tf.Tensor],
                        layout: Mapping[str, object]) -> Tensors:
  """Picks each token's output from its best window, then maps to characters.

  The best window is `features.best_window_per_word`'s (see
  `_best_window_positions`).

  Args:
    window_outputs: {tags string, label_ids int32, scores float32} [NW, T].
    layout: from `text_features`.

  Returns:
    {tags string [B, C], label_ids int32 [B, C], scores float32 [B, C],
     lengths int32 [B]}; whitespace and padding positions hold
     `schema.NO_TOKEN_TAG`, `schema.PAD_LABEL_ID` and 0.

  Example: "a b" in one window [CLS] a b [SEP] with tags [O, B-X, I-X, O] ->
  tags [[B-X, "", I-X]], lengths [3].
  """
  num_tokens = layout["num_tokens"]
  max_tokens = tf.reduce_max(tf.concat([num_tokens, [0]], 0))
  index = _best_window_positions(
      layout, tf.shape(window_outputs[schema.OUTPUT_TAGS])[1])
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


def build_text_signature(tokenizer, model_outputs: Callable[[Tensors], Tensors],
                         max_seq_length: int, doc_stride: int,
                         max_text_chars: int
                         ) -> Tuple[Dict[str, tf.Tensor], Tensors]:
  """predict_text's input placeholder and outputs, in the default graph.

  Call it inside the signature's name scope; the character table is filled by
  `tf1.tables_initializer()` (the SavedModel's main op).

  Args:
    tokenizer: `tokenization.NerTokenizer` of the training vocab.
    model_outputs: window features (int32 [NW, T]) -> {tags, label_ids,
      scores} [NW, T], sharing the other signatures' variables.
    max_seq_length, doc_stride, max_text_chars: see `text_features`.

  Returns:
    ({"text": string placeholder [B]}, `select_text_outputs`'s outputs).
  """
  text = tf1.placeholder(tf.string, [None], name=schema.TEXT_INPUT_KEY)
  table_items = character_table(tokenizer)
  unk_id, cls_id, sep_id = tokenizer.convert_tokens_to_ids(
      [schema.UNK_TOKEN, schema.CLS_TOKEN, schema.SEP_TOKEN])
  table = tf1.lookup.StaticHashTable(
      tf1.lookup.KeyValueTensorInitializer(
          list(table_items), np.array(list(table_items.values()), np.int64),
          key_dtype=tf.string, value_dtype=tf.int64),
      default_value=unk_id, name="character_table")
  features, layout = text_features(
      text, table, cls_id, sep_id, tokenizer.do_lower_case, max_seq_length,
      doc_stride, max_text_chars)
  outputs = select_text_outputs(model_outputs(features), layout)
  return {schema.TEXT_INPUT_KEY: text}, outputs
