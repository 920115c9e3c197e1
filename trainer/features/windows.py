"""Turns tokenized sentences into BERT windows and merges window outputs back.

Pure Python: no TensorFlow import. The tokenizer is any object with
``tokenize_word(word) -> list[str]`` (never empty) and
``convert_tokens_to_ids(pieces) -> list[int]`` (see
`trainer.features.tokenization`).

Walk-through (max_seq_length=8, so 6 pieces fit between [CLS] and [SEP];
doc_stride=2), words and tags::

    words:  John   Johanson     lives  in  New    York   City
    tags:   B-PER  I-PER        O      O   B-LOC  I-LOC  I-LOC
    pieces: john   johan ##son  lives  in  new    york   city    (8 pieces)

The sentence needs 8 > 6 pieces, so it is NOT truncated but split into
overlapping windows of whole words, the next window starting at the first word
at least `doc_stride` pieces after the previous start:

    window 0: [CLS] john johan ##son lives in new [SEP]      words 0-4
    window 1: [CLS] lives in new york city [SEP]             words 2-6

``label_ids`` carries the tag id on the first piece of each word and
``PAD_LABEL_ID`` (-1) on [CLS], [SEP], "##son" and padding, so those are
masked out of loss and metrics. Each word is scored in exactly one window, the
one where it has most context (SQuAD's rule: min(left, right) context plus a
small bonus for longer windows): ``score_mask`` is 1 there. "lives" (word 2)
has 2 words left and 2 right in window 0 (score 2) but none left in window 1,
so it is scored in window 0; "new" (word 4) is last in window 0 and in the
middle of window 1, so it is scored in window 1.

With labels O=0, B-PER=1, I-PER=2, B-LOC=3, I-LOC=4 window 0 becomes::

    input_ids      [cls, john, johan, ##son, lives, in, new, sep]
    input_mask     [1,   1,    1,     1,     1,     1,  1,   1]
    segment_ids    [0,   0,    0,     0,     0,     0,  0,   0]
    label_ids      [-1,  1,    2,     -1,    0,     0,  3,   -1]
    word_positions [-1,  0,    1,     -1,    2,     3,  4,   -1]
    score_mask     [0,   1,    1,     0,     1,     1,  0,   0]

Document context (``--context_pieces``): a `SentenceContext` holds word-pieces
of the neighbouring sentences (`trainer.features.context` picks them). They go
where a window has room, before and after the sentence's pieces, with label -1,
word position -1 and score 0, so the model reads them but they never carry a
label or a prediction. Windows are planned from the sentence alone, so
context never pushes a sentence word out of its windows; with `NO_CONTEXT`
the features are exactly the sentence-at-a-time ones above.

Features are stored unpadded; the input pipeline pads (see
`schema.PADDING_VALUES`).
"""

import bisect
import dataclasses
from typing import Any, Iterable, Mapping, Optional, Protocol, Sequence

from trainer import schema


class WordPieceTokenizer(Protocol):
  """What the feature code needs of a tokenizer (a `NerTokenizer`)."""

  def tokenize_word(self, word: str) -> list[str]:
    """Word-pieces of one input token, never empty."""

  def convert_tokens_to_ids(self, pieces: Sequence[str]) -> list[int]:
    """Ids of word-pieces."""


@dataclasses.dataclass(frozen=True)
class WindowFeatures:
  """One BERT input window of one sentence; every list has the same length.

  Attributes:
    example_index: index of the sentence in its input file.
    window_index: index of the window within the sentence (0-based).
    input_ids: int ids, ``[CLS] pieces [SEP]``, length <= max_seq_length.
    input_mask: 1 for every position (features are unpadded).
    segment_ids: 0 for every position.
    label_ids: label id on first pieces, `schema.PAD_LABEL_ID` elsewhere.
    word_positions: word index on first pieces, `schema.NO_WORD` elsewhere.
    score_mask: 1 on first pieces of the words this window scores, else 0.
  """
  example_index: int
  window_index: int
  input_ids: tuple[int, ...]
  input_mask: tuple[int, ...]
  segment_ids: tuple[int, ...]
  label_ids: tuple[int, ...]
  word_positions: tuple[int, ...]
  score_mask: tuple[int, ...]

  def as_dict(self) -> dict[str, Any]:
    """Returns {feature key: int or tuple of ints} named by `schema`."""
    return {
        schema.EXAMPLE_INDEX: self.example_index,
        schema.WINDOW_INDEX: self.window_index,
        schema.INPUT_IDS: self.input_ids,
        schema.INPUT_MASK: self.input_mask,
        schema.SEGMENT_IDS: self.segment_ids,
        schema.LABEL_IDS: self.label_ids,
        schema.WORD_POSITIONS: self.word_positions,
        schema.SCORE_MASK: self.score_mask,
    }


def plan_windows(piece_counts: Sequence[int], max_pieces: int,
                 doc_stride: int) -> list[tuple[int, int]]:
  """Splits words into overlapping windows of whole words.

  Args:
    piece_counts: list of int, word-pieces per word (each >= 1).
    max_pieces: int, pieces that fit in one window (max_seq_length - 2).
    doc_stride: int >= 1, the next window starts at the first word at least
      this many pieces after the current start (and never past the current
      end, so no word is skipped).

  Returns:
    List of (start_word, end_word_exclusive). A single word longer than
    `max_pieces` gets a window of its own (its pieces are cut later; its first
    piece, which carries the label, always fits).

  Example: plan_windows([1, 2, 1, 1, 1, 1, 1], 6, 2) -> [(0, 5), (2, 7)].
  """
  num_words = len(piece_counts)
  if num_words == 0:
    return []
  starts = [0]
  for count in piece_counts:
    starts.append(starts[-1] + count)
  windows = []
  start = 0
  while True:
    end = start
    while end < num_words and starts[end + 1] - starts[start] <= max_pieces:
      end += 1
    end = max(end, start + 1)
    windows.append((start, end))
    if end >= num_words:
      return windows
    next_start = start + 1
    while next_start < end and starts[next_start] - starts[start] < doc_stride:
      next_start += 1
    start = next_start


def best_window_per_word(windows: Sequence[tuple[int, int]],
                         num_words: int) -> list[int]:
  """Picks for each word the window where it has most context.

  Args:
    windows: list of (start_word, end_word_exclusive) from `plan_windows`.
    num_words: int, words in the sentence.

  Returns:
    List of int (window index per word). Score is min(left, right) context in
    words plus 0.01 * window length; ties go to the earlier window.

  Example: best_window_per_word([(0, 5), (2, 7)], 7) -> [0, 0, 0, 0, 1, 1, 1].
  """
  best = [None] * num_words
  best_score = [None] * num_words
  for window_index, (start, end) in enumerate(windows):
    for word in range(start, end):
      score = min(word - start, end - 1 - word) + 0.01 * (end - start)
      if best_score[word] is None or score > best_score[word]:
        best[word], best_score[word] = window_index, score
  return best


@dataclasses.dataclass(frozen=True)
class SentenceContext:
  """Word-pieces around a sentence that the model sees but never labels.

  Built by `trainer.features.context` from the sentence's document neighbours
  (or from a client's texts). `convert_sentence` keeps as many as fit.

  Attributes:
    left: pieces before the sentence, in text order (the nearest last).
    right: pieces after the sentence, in text order (the nearest first).
  """
  left: tuple[str, ...] = ()
  right: tuple[str, ...] = ()


NO_CONTEXT = SentenceContext()


def split_context_room(room: int, left_available: int,
                       right_available: int) -> tuple[int, int]:
  """How many left and right context pieces fit in `room` free positions.

  Each side gets half the room (the odd one to the right); a side that has
  fewer pieces than its half leaves the rest to the other side.

  Examples: (10, 20, 20) -> (5, 5); (10, 3, 20) -> (3, 7);
  (11, 20, 20) -> (5, 6); (10, 0, 0) -> (0, 0).
  """
  left = min(left_available, max(room // 2, room - right_available))
  return left, min(right_available, room - left)


def _window_context(context: SentenceContext, room: int, first: bool,
                    last: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(left, right) context pieces of one window with `room` free positions.

  Only the first window of a sentence continues the text before it and only
  the last continues the text after it, so left context goes to the first
  window and right context to the last (a one-window sentence gets both):
  every window stays a contiguous stretch of the document.
  """
  left = context.left if first else ()
  right = context.right if last else ()
  take_left, take_right = split_context_room(room, len(left), len(right))
  return left[len(left) - take_left:], right[:take_right]


def _sentence_columns(word_pieces: Sequence[Sequence[str]],
                      tag_ids: Optional[Sequence[int]], words: range,
                      max_pieces: int, scored: Sequence[bool]
                      ) -> tuple[list[str], list[int], list[int], list[int]]:
  """(pieces, label ids, word positions, score mask) of a window's words.

  First pieces carry the word's label, index and score (`scored`, one per
  word of `words`); other pieces carry none. A lone over-long word is cut to
  `max_pieces`; its first piece, which carries its label, always fits.

  Example: word_pieces [["john"], ["johan", "##son"]], tag_ids [1, 2],
  words range(0, 2), scored [True, False] -> (["john", "johan", "##son"],
  [1, 2, -1], [0, 1, -1], [1, 0, 0]).
  """
  pieces, labels, positions, score = [], [], [], []
  for word, word_scored in zip(words, scored):
    room = max_pieces - len(pieces)
    for piece_index, piece in enumerate(word_pieces[word][:room]):
      pieces.append(piece)
      if piece_index == 0:
        labels.append(schema.PAD_LABEL_ID if tag_ids is None
                      else tag_ids[word])
        positions.append(word)
        score.append(1 if word_scored else 0)
      else:
        labels.append(schema.PAD_LABEL_ID)
        positions.append(schema.NO_WORD)
        score.append(0)
  return pieces, labels, positions, score


def convert_sentence(words: Sequence[str], tag_ids: Optional[Sequence[int]],
                     example_index: int, tokenizer: WordPieceTokenizer,
                     max_seq_length: int, doc_stride: int,
                     context: SentenceContext = NO_CONTEXT,
                     word_pieces: Optional[Sequence[Sequence[str]]] = None
                     ) -> list[WindowFeatures]:
  """Converts one sentence into one or more `WindowFeatures`.

  Windows are planned from the sentence's own pieces, so context never
  pushes a sentence word out of a window; context pieces only fill the room
  a window has left, as ``[CLS] left sentence-pieces right [SEP]``, with
  label `schema.PAD_LABEL_ID`, word position `schema.NO_WORD` and score 0.

  Example (the vocab of the module docstring, max_seq_length=8): words
  ["New", "York"], tags [3, 4], context left ("lives", "in"), right
  ("john",) -> one window with room 4 for context, split 2 left, 1 right::

      input_ids      [cls, lives, in, new, york, john, sep]
      label_ids      [-1,  -1,    -1, 3,   4,    -1,   -1]
      word_positions [-1,  -1,    -1, 0,   1,    -1,   -1]
      score_mask     [0,   0,     0,  1,   1,    0,    0]

  Args:
    words: sequence of str, the input tokens (non-empty).
    tag_ids: sequence of int label ids, one per word, or None when unlabelled
      (label_ids are then `schema.PAD_LABEL_ID` everywhere).
    example_index: int, stored in every window.
    tokenizer: object with `tokenize_word` and `convert_tokens_to_ids`.
    max_seq_length: int >= 3, positions per window including [CLS] and [SEP].
    doc_stride: int >= 1, see `plan_windows`.
    context: the pieces around the sentence (`NO_CONTEXT`: none, the
      sentence-at-a-time features).
    word_pieces: the words' pieces when the caller has them already
      (`tokenizer.tokenize_word` of each word); computed when None.

  Returns:
    List of `WindowFeatures` (see the module docstring for a worked example).
  """
  if tag_ids is not None and len(tag_ids) != len(words):
    raise ValueError(f"Sentence {example_index} has {len(words)} words but "
                     f"{len(tag_ids)} tags.")
  max_pieces = max_seq_length - 2
  if word_pieces is None:
    word_pieces = [tokenizer.tokenize_word(word) for word in words]
  windows = plan_windows([len(p) for p in word_pieces], max_pieces, doc_stride)
  scored_in = best_window_per_word(windows, len(words))
  cls_id, sep_id = tokenizer.convert_tokens_to_ids(
      [schema.CLS_TOKEN, schema.SEP_TOKEN])
  features = []
  for window_index, (start, end) in enumerate(windows):
    pieces, labels, positions, score = _sentence_columns(
        word_pieces, tag_ids, range(start, end), max_pieces,
        [scored_in[word] == window_index for word in range(start, end)])
    left, right = _window_context(context, max_pieces - len(pieces),
                                  window_index == 0,
                                  window_index == len(windows) - 1)
    features.append(_window_features(
        example_index, window_index, (cls_id, sep_id), left,
        (tokenizer.convert_tokens_to_ids(pieces), labels, positions, score),
        right, tokenizer))
  return features


def _window_features(example_index, window_index, cls_sep_ids, left,
                     sentence_columns, right, tokenizer) -> WindowFeatures:
  """[CLS] left-context sentence right-context [SEP] as one window.

  `sentence_columns` is (piece ids, labels, word positions, score mask) of
  the window's sentence part; [CLS], [SEP] and context pieces get no label,
  no word and are never scored.
  """
  piece_ids, labels, positions, score = sentence_columns
  cls_id, sep_id = cls_sep_ids
  before, after = 1 + len(left), len(right) + 1
  length = before + len(piece_ids) + after
  return WindowFeatures(
      example_index=example_index,
      window_index=window_index,
      input_ids=tuple([cls_id] + tokenizer.convert_tokens_to_ids(list(left))
                      + list(piece_ids)
                      + tokenizer.convert_tokens_to_ids(list(right))
                      + [sep_id]),
      input_mask=(1,) * length,
      segment_ids=(0,) * length,
      label_ids=tuple([schema.PAD_LABEL_ID] * before + labels
                      + [schema.PAD_LABEL_ID] * after),
      word_positions=tuple([schema.NO_WORD] * before + positions
                           + [schema.NO_WORD] * after),
      score_mask=tuple([0] * before + score + [0] * after),
  )


def merge_window_outputs(window_outputs: Iterable[Mapping[str, Any]],
                         num_words_per_example: Sequence[int]
                         ) -> list[dict[str, list[Any]]]:
  """Merges per-window model outputs into exactly one value per word.

  Args:
    window_outputs: iterable of dicts, one per window, each with
      `schema.EXAMPLE_INDEX` (int), `schema.WORD_POSITIONS` and
      `schema.SCORE_MASK` (int sequences, may be padded) and any number of
      per-position value sequences under other keys (e.g. predicted label ids
      and scores).
    num_words_per_example: list of int, words in each sentence.

  Returns:
    List (one per sentence) of dicts {value key: list, one entry per word}.

  Raises:
    ValueError: if a word is scored twice or never (a bug upstream, or a
      features file that does not match the input file).

  Example: windows of a 3-word sentence scoring words 0-1 and 2::

      [{example_index: 0, word_positions: [-1, 0, 1, 2, -1],
        score_mask: [0, 1, 1, 0, 0], ids: [9, 1, 2, 3, 9]},
       {example_index: 0, word_positions: [-1, 1, 2, -1],
        score_mask: [0, 0, 1, 0], ids: [9, 5, 6, 9]}]
      -> [{ids: [1, 2, 6]}]
  """
  merged = [None] * len(num_words_per_example)
  for output in window_outputs:
    example = int(output[schema.EXAMPLE_INDEX])
    value_keys = [key for key in output
                  if key not in (schema.EXAMPLE_INDEX, schema.WORD_POSITIONS,
                                 schema.SCORE_MASK, schema.WINDOW_INDEX)]
    if merged[example] is None:
      merged[example] = {key: [None] * num_words_per_example[example]
                         for key in value_keys}
    slots = merged[example]
    for position, (word, scored) in enumerate(
        zip(output[schema.WORD_POSITIONS], output[schema.SCORE_MASK])):
      if not scored:
        continue
      word = int(word)
      for key in value_keys:
        if slots[key][word] is not None:
          raise ValueError(f"Word {word} of sentence {example} was scored "
                           "twice.")
        value = output[key][position]
        slots[key][word] = value.item() if hasattr(value, "item") else value
  for example, slots in enumerate(merged):
    if slots is None:
      raise ValueError(f"Sentence {example} got no prediction.")
    for key, values in slots.items():
      if None in values:
        raise ValueError(f"Sentence {example}: word {values.index(None)} "
                         f"got no {key}.")
  return merged


# Length buckets derived from the data (`derive_bucket_boundaries`): many
# narrow buckets, each batch padded to its longest window. On CoNLL-2003
# train (MiniLM pieces) 32 quantiles rounded to even lengths give 20 buckets
# and 6.3% padding; the former 8 rounded to multiples of 8 gave 20.2%
# (bench/padding.py).
DEFAULT_NUM_BUCKETS = 32
CPU_LENGTH_MULTIPLE = 2
# GPU float16 tensor cores want lengths in multiples of 8, and XLA compiles
# one program per shape: --use_amp / --use_xla round buckets to 8.
ACCELERATOR_LENGTH_MULTIPLE = 8


def derive_bucket_boundaries(length_histogram: Mapping[int, int],
                             num_buckets: int = DEFAULT_NUM_BUCKETS,
                             multiple: int = CPU_LENGTH_MULTIPLE
                             ) -> list[int]:
  """Length-bucket boundaries holding about equal numbers of windows.

  Args:
    length_histogram: {window length: count}.
    num_buckets: wanted number of buckets (fewer when lengths are few).
    multiple: round each bucket's upper length up to a multiple of this, so
      batch shapes repeat and kernels are reused.

  Returns:
    Ascending boundaries for `tf.data`'s `bucket_by_sequence_length`: a
    window of length n goes to the first bucket whose boundary is > n.

  Example: lengths 5 x 50, 12 x 30, 40 x 20 with 3 buckets, multiple 8
    -> quantile lengths 5, 12, 40 -> rounded 8, 16, 40 -> [9, 17].
  """
  total = sum(length_histogram.values())
  if not total:
    return []
  lengths = sorted(length_histogram)
  cumulative, running = [], 0
  for length in lengths:
    running += length_histogram[length]
    cumulative.append(running)
  uppers = []
  for bucket in range(1, num_buckets + 1):
    target = total * bucket / num_buckets
    length = next(l for l, c in zip(lengths, cumulative) if c >= target)
    rounded = -(-length // multiple) * multiple
    if not uppers or rounded > uppers[-1]:
      uppers.append(rounded)
  # The last bucket is open-ended; boundaries are exclusive upper limits.
  return [upper + 1 for upper in uppers[:-1]]


def padding_bound(length_histogram: Mapping[int, int],
                  boundaries: Sequence[int]) -> float:
  """Most padding the buckets can leave: each batch padded to its bucket's
  longest window (a batch's own longest is often shorter).

  Returns the padded share of all positions, 0.0 for no windows.

  Example: {5: 2, 8: 1, 20: 1}, boundaries [9] -> buckets {5, 5, 8} (padded
  to 8) and {20}: (3 + 3) / (8 * 3 + 20) = 0.136...
  """
  bucket_of = {length: bisect.bisect_right(boundaries, length)
               for length in length_histogram}
  longest: dict[int, int] = {}
  for length, bucket in bucket_of.items():
    longest[bucket] = max(longest.get(bucket, 0), length)
  padded = sum(count * longest[bucket_of[length]]
               for length, count in length_histogram.items())
  real = sum(length * count for length, count in length_histogram.items())
  return (padded - real) / padded if padded else 0.0
