"""Texts to model inputs, model outputs to entities: the client's pure half.

No train/serve skew: texts are split into words with the trainer's
`word_splitting.default_word_splitter`, into word-pieces and windows with
`features.convert_sentence` (long texts become overlapping windows), window
outputs are merged with `features.merge_window_outputs`, and entities come
from `predictions.sentence_record`: the code `run_ner.py --do_predict` runs.

    texts --sentences_from_texts--> Sentences --build_windows--> windows
      (with contexts: document_contexts / pair_contexts, optional)
      --window_inputs--> inputs ... transport ... outputs
      --window_outputs_for_merge--> per-window dicts
      --records_from_window_outputs--> records --entities_from_record-->

predict_text (character-level models) skips the windows: `text_inputs` in,
`records_from_text_outputs` out. Nothing here imports TensorFlow except
`window_inputs` for predict_examples (tf.train.Example protos).
"""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from trainer.features import context as context_lib
from trainer.features import windows as features_lib
from trainer.evaluation import predictions as predictions_lib
from trainer import schema
from trainer.data.formats import reader_common
from trainer.data import word_splitting
from serving.client.errors import PredictionError


def sentences_from_texts(
    texts: Sequence[str],
    word_splitter: Optional[Callable[[str], List[str]]] = None
) -> List[reader_common.Sentence]:
  """Splits texts into words like `text_reader.read_text` does.

  Returns:
    list of `reader_common.Sentence` (tags None, `text` and `char_spans` set); a
    text without words gives a sentence with no tokens.

  Example: ["张三 去了"] -> [Sentence(("张", "三", "去", "了"), None,
      "text 0", "张三 去了", ((0, 1), (1, 2), (3, 4), (4, 5)))]
  """
  splitter = word_splitter or word_splitting.default_word_splitter
  sentences = []
  for index, text in enumerate(texts):
    if not isinstance(text, str):
      raise ValueError(f"Text {index} is {type(text).__name__}, not str: "
                       f"{text!r}")
    where = f"text {index}"
    tokens = tuple(splitter(text))
    sentences.append(reader_common.Sentence(
        tokens=tokens, tags=None, source=where, text=text,
        char_spans=word_splitting.token_char_spans(text, tokens, where)))
  return sentences


def build_windows(sentences: Sequence[reader_common.Sentence], tokenizer,
                  max_seq_length: int, doc_stride: int,
                  contexts: Optional[Sequence[features_lib.SentenceContext]]
                  = None) -> List[features_lib.WindowFeatures]:
  """`features.convert_sentence` for every sentence with words.

  Args:
    contexts: one `features.SentenceContext` per sentence
      (`document_contexts`, `pair_contexts`), or None for none.

  Returns:
    list of `features.WindowFeatures`; `example_index` = sentence index.
  """
  windows = []
  for index, sentence in enumerate(sentences):
    if sentence.tokens:
      windows.extend(features_lib.convert_sentence(
          sentence.tokens, None, index, tokenizer, max_seq_length,
          doc_stride, context=(features_lib.NO_CONTEXT if contexts is None
                               else contexts[index])))
  return windows


def document_contexts(sentences: Sequence[reader_common.Sentence], tokenizer,
                      context_pieces: int
                      ) -> List[features_lib.SentenceContext]:
  """Contexts of consecutive texts read as one document (`as_document`).

  The trainer's own neighbour rule (`context.sentences_with_context`), so a
  predict file's sentences sent in order get --do_predict's windows.

  Example (N=2): texts ["Mary went", "to Paris"] -> [((), ("to", "paris")),
  (("mary", "went"), ())] as (left, right) pieces.
  """
  return [context for _, context in context_lib.sentences_with_context(
      sentences, tokenizer, context_pieces, "file")]


def pair_contexts(pairs: Sequence[Any], tokenizer, context_pieces: int,
                  word_splitter: Optional[Callable[[str], List[str]]] = None
                  ) -> List[features_lib.SentenceContext]:
  """Contexts from one (left_text, right_text) pair per text.

  Both texts are split into words like the texts themselves; the last
  `context_pieces` pieces of the left text and the first of the right one
  are kept (`context.context_from_words`).

  Raises:
    ValueError: when a pair is not two strings.

  Example (N=2): [("The UN met", "in Paris .")] -> [(("un", "met"),
  ("in", "paris"))] as (left, right) pieces.
  """
  splitter = word_splitter or word_splitting.default_word_splitter
  contexts = []
  for index, pair in enumerate(pairs):
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
        or not all(isinstance(text, str) for text in pair)):
      raise ValueError(f"Context {index} is {pair!r}; give one (left_text, "
                       "right_text) pair of strings per text ('' for none).")
    contexts.append(context_lib.context_from_words(
        splitter(pair[0]), splitter(pair[1]), tokenizer, context_pieces))
  return contexts


def _serialized_examples(windows: Sequence[features_lib.WindowFeatures]
                         ) -> np.ndarray:
  """object [B] of serialized tf.Examples in the training TFRecord layout."""
  # Imported here: tf.train.Example lives in TensorFlow's protos.
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow.core.example import feature_pb2  # pylint: disable=g-import-not-at-top
  serialized = []
  for window in windows:
    example = example_pb2.Example(features=feature_pb2.Features(feature={
        key: feature_pb2.Feature(int64_list=feature_pb2.Int64List(
            value=getattr(window, key)))
        for key in schema.MODEL_INPUT_KEYS + (schema.WORD_POSITIONS,)}))
    serialized.append(example.SerializeToString())
  return np.array(serialized, dtype=object)


def window_inputs(windows: Sequence[features_lib.WindowFeatures],
                  signature_name: str = schema.SERVING_DEFAULT_SIGNATURE
                  ) -> Dict[str, np.ndarray]:
  """Model inputs for a batch of windows.

  Returns:
    serving_default: {input_ids, input_mask, segment_ids: int32 [B, T]}
      padded with `schema.PADDING_VALUES` to the longest window;
    predict_examples: {examples: object [B] of serialized tf.Example bytes
      holding input_ids, input_mask, segment_ids and word_positions, so heads
      that decode per word (CRF) see exactly the training word starts}.

  Example: windows with input_ids (2, 7, 3) and (2, 3) ->
      input_ids [[2, 7, 3], [2, 3, 0]], input_mask [[1, 1, 1], [1, 1, 0]].
  """
  if signature_name == schema.PREDICT_EXAMPLES_SIGNATURE:
    return {schema.EXAMPLES_INPUT_KEY: _serialized_examples(windows)}
  if signature_name != schema.SERVING_DEFAULT_SIGNATURE:
    raise ValueError(f"window_inputs builds {schema.SERVING_DEFAULT_SIGNATURE} "
                     f"or {schema.PREDICT_EXAMPLES_SIGNATURE} inputs, not "
                     f"{signature_name!r}.")
  length = max((len(window.input_ids) for window in windows), default=0)
  inputs = {}
  for key in schema.MODEL_INPUT_KEYS:
    array = np.full([len(windows), length], schema.PADDING_VALUES[key],
                    np.int32)
    for row, window in enumerate(windows):
      values = getattr(window, key)
      array[row, :len(values)] = values
    inputs[key] = array
  return inputs


def text_inputs(texts: Sequence[str]) -> Dict[str, np.ndarray]:
  """predict_text inputs: {text: object [B] of UTF-8 bytes}.

  Example: ["北京"] -> {"text": array([b"\\xe5\\x8c\\x97\\xe4\\xba\\xac"])}.
  """
  return {schema.TEXT_INPUT_KEY: np.array(
      [text.encode("utf-8") for text in texts], dtype=object)}


def window_outputs_for_merge(windows: Sequence[features_lib.WindowFeatures],
                             outputs: Mapping[str, np.ndarray]
                             ) -> List[Dict[str, Any]]:
  """Per-window dicts for `features.merge_window_outputs`.

  Args:
    windows: the `WindowFeatures` of one request, in order.
    outputs: {label_ids: int [B, T], scores: float [B, T], ...}.

  Raises:
    PredictionError: INTERNAL when the row count differs.
  """
  label_ids = np.asarray(outputs[schema.OUTPUT_LABEL_IDS])
  scores = np.asarray(outputs[schema.OUTPUT_SCORES])
  if label_ids.shape[0] != len(windows):
    raise PredictionError(
        "INTERNAL", f"sent {len(windows)} windows, got {label_ids.shape[0]} "
                    "rows back")
  merged_inputs = []
  for row, window in enumerate(windows):
    length = len(window.input_ids)
    merged_inputs.append({
        schema.EXAMPLE_INDEX: window.example_index,
        schema.WORD_POSITIONS: window.word_positions,
        schema.SCORE_MASK: window.score_mask,
        "label_id": label_ids[row, :length].tolist(),
        "score": scores[row, :length].tolist(),
    })
  return merged_inputs


def records_from_window_outputs(sentences: Sequence[reader_common.Sentence],
                                window_outputs: Sequence[Mapping[str, Any]],
                                label_names: Sequence[str]
                                ) -> List[Dict[str, Any]]:
  """`predictions.sentence_record` per sentence from merged window outputs."""
  with_words = [index for index, s in enumerate(sentences) if s.tokens]
  dense = {sentence: i for i, sentence in enumerate(with_words)}
  renumbered = [dict(output, **{schema.EXAMPLE_INDEX:
                                dense[output[schema.EXAMPLE_INDEX]]})
                for output in window_outputs]
  merged = features_lib.merge_window_outputs(
      renumbered, [len(sentences[i].tokens) for i in with_words])
  records = [predictions_lib.sentence_record(s, [], [])
             for s in sentences]
  for index, values in zip(with_words, merged):
    tags = [label_names[label_id] for label_id in values["label_id"]]
    records[index] = predictions_lib.sentence_record(
        sentences[index], tags, values["score"])
  return records


def records_from_text_outputs(texts: Sequence[str],
                              outputs: Mapping[str, np.ndarray]
                              ) -> List[Dict[str, Any]]:
  """`predictions.sentence_record` per text from predict_text outputs.

  Characters whose tag is `schema.NO_TOKEN_TAG` (whitespace) are not tokens,
  exactly as `word_splitting.default_word_splitter` drops whitespace.

  Raises:
    PredictionError: INTERNAL when a length differs from the text.
  """
  tags = np.asarray(outputs[schema.OUTPUT_TAGS])
  scores = np.asarray(outputs[schema.OUTPUT_SCORES])
  lengths = np.asarray(outputs[schema.OUTPUT_LENGTHS])
  records = []
  for row, text in enumerate(texts):
    if int(lengths[row]) != len(text):
      raise PredictionError(
          "INTERNAL", f"text {row} has {len(text)} characters but the server "
                      f"counted {int(lengths[row])}")
    positions, row_tags, row_scores = [], [], []
    for position in range(len(text)):
      tag = tags[row, position]
      tag = tag.decode("utf-8") if isinstance(tag, bytes) else str(tag)
      if tag != schema.NO_TOKEN_TAG:
        positions.append(position)
        row_tags.append(tag)
        row_scores.append(float(scores[row, position]))
    sentence = reader_common.Sentence(
        tokens=tuple(text[p] for p in positions), tags=None,
        source=f"text {row}", text=text,
        char_spans=tuple((p, p + 1) for p in positions))
    records.append(predictions_lib.sentence_record(sentence, row_tags,
                                                   row_scores))
  return records


def entities_from_record(record: Mapping[str, Any]) -> List[Dict[str, Any]]:
  """Client entities: type, text, character start/end, score.

  Example: {"entities": [{"type": "LOC", "text": "北京", "start": 3, "end": 5,
      "char_start": 3, "char_end": 5, "score": 0.9}]} ->
      [{"type": "LOC", "text": "北京", "start": 3, "end": 5, "score": 0.9}]
  """
  return [{"type": entity["type"], "text": entity["text"],
           "start": entity["char_start"], "end": entity["char_end"],
           "score": entity["score"]} for entity in record["entities"]]


# Most predict_text characters the client puts in one request: the default
# max_text_chars, which the development server always admits (its bound is
# the larger of --max_batch_rows x max_position_embeddings and
# max_text_chars, `serving.server.request_bounds`).
MAX_TEXT_CHARACTERS_PER_REQUEST = 8192


def text_batches(texts: Sequence[str], batch_size: int,
                 max_characters: int = MAX_TEXT_CHARACTERS_PER_REQUEST
                 ) -> List[Sequence[str]]:
  """Consecutive slices of at most `batch_size` texts and `max_characters`
  characters in all (a longer text goes alone).

  Example: (["ab", "cde", "f"], 10, 5) -> [["ab", "cde"], ["f"]].
  """
  chunks, start, characters = [], 0, 0
  for index, text in enumerate(texts):
    if index > start and (index - start >= batch_size
                          or characters + len(text) > max_characters):
      chunks.append(texts[start:index])
      start, characters = index, 0
    characters += len(text)
  if start < len(texts):
    chunks.append(texts[start:])
  return chunks


# The cost of one more model request, in word-pieces of compute. On a 2-core
# Xeon, 32 shuffled CoNLL sentences through a 3-layer MiniLM student ran at
# 534 sentences/s in order and 625-654 grouped with 32, 64 or 128 in process;
# 318 and 499-510 over gRPC (bench/results/request_grouping.md).
DEFAULT_REQUEST_OVERHEAD_PIECES = 64


def length_batches(lengths: Sequence[int], batch_size: int,
                   request_overhead_pieces: Optional[int]
                   ) -> List[List[int]]:
  """Windows grouped into model requests that waste little padding.

  A request pads every window to its longest one, so its compute is about
  rows x longest. The windows are sorted by length and cut into runs of at
  most `batch_size` that minimize the padded pieces plus
  `request_overhead_pieces` per request (exact, by dynamic programming;
  O(len(lengths) x batch_size)). Outputs are per window, so grouping
  changes what is computed, never the tags.

  Args:
    lengths: pieces per window (input_ids length), in request order.
    batch_size: most windows per request.
    request_overhead_pieces: the cost of one more request, in pieces; None
      keeps the request order in consecutive `batch_size` slices (what a
      server that batches requests itself wants).

  Returns:
    lists of indices into `lengths`, one per request; every index once.

  Example: lengths [3, 37, 8, 33], batch_size 4, overhead 10 ->
    [[0, 2], [3, 1]] (2 x 8 + 2 x 37 + 2 x 10 = 110 < 4 x 37 + 10 = 158);
    overhead 100 -> [[0, 2, 3, 1]]; None -> [[0, 1, 2, 3]].
  """
  if request_overhead_pieces is None:
    return [list(range(start, min(start + batch_size, len(lengths))))
            for start in range(0, len(lengths), batch_size)]
  order = sorted(range(len(lengths)), key=lambda index: lengths[index])
  # best[j]: least cost of the first j sorted windows; cut[j]: where the
  # last request of that plan starts.
  best, cut = [0] + [None] * len(order), [0] * (len(order) + 1)
  for end in range(1, len(order) + 1):
    longest = lengths[order[end - 1]]
    for start in range(max(0, end - batch_size), end):
      cost = best[start] + (end - start) * longest + request_overhead_pieces
      if best[end] is None or cost < best[end]:
        best[end], cut[end] = cost, start
  groups, end = [], len(order)
  while end:
    groups.append(order[cut[end]:end])
    end = cut[end]
  return groups[::-1]
