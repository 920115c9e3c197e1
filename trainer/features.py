"""Turns tokenized sentences into BERT windows and merges window outputs back.

Pure Python: no TensorFlow import. The tokenizer is any object with
``tokenize_word(word) -> list[str]`` (never empty) and
``convert_tokens_to_ids(pieces) -> list[int]`` (see `trainer.tokenization`).

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

Features are stored unpadded; the input pipeline pads (see `schema.PADDING_VALUES`).
"""

import dataclasses

from trainer import schema


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
  input_ids: tuple
  input_mask: tuple
  segment_ids: tuple
  label_ids: tuple
  word_positions: tuple
  score_mask: tuple

  def as_dict(self):
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


def plan_windows(piece_counts, max_pieces, doc_stride):
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


def best_window_per_word(windows, num_words):
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


def convert_sentence(words, tag_ids, example_index, tokenizer, max_seq_length,
                     doc_stride):
  """Converts one sentence into one or more `WindowFeatures`.

  Args:
    words: sequence of str, the input tokens (non-empty).
    tag_ids: sequence of int label ids, one per word, or None when unlabelled
      (label_ids are then `schema.PAD_LABEL_ID` everywhere).
    example_index: int, stored in every window.
    tokenizer: object with `tokenize_word` and `convert_tokens_to_ids`.
    max_seq_length: int >= 3, positions per window including [CLS] and [SEP].
    doc_stride: int >= 1, see `plan_windows`.

  Returns:
    List of `WindowFeatures` (see the module docstring for a worked example).
  """
  if tag_ids is not None and len(tag_ids) != len(words):
    raise ValueError("Sentence %d has %d words but %d tags."
                     % (example_index, len(words), len(tag_ids)))
  max_pieces = max_seq_length - 2
  word_pieces = [tokenizer.tokenize_word(word) for word in words]
  windows = plan_windows([len(p) for p in word_pieces], max_pieces, doc_stride)
  scored_in = best_window_per_word(windows, len(words))
  cls_id, sep_id = tokenizer.convert_tokens_to_ids(
      [schema.CLS_TOKEN, schema.SEP_TOKEN])
  features = []
  for window_index, (start, end) in enumerate(windows):
    pieces, labels, positions, score = [], [], [], []
    for word in range(start, end):
      # A lone over-long word is cut; its first piece carries its label.
      room = max_pieces - len(pieces)
      word_piece_list = word_pieces[word][:room]
      for piece_index, piece in enumerate(word_piece_list):
        first = piece_index == 0
        pieces.append(piece)
        if first:
          labels.append(schema.PAD_LABEL_ID if tag_ids is None
                        else tag_ids[word])
          positions.append(word)
          score.append(1 if scored_in[word] == window_index else 0)
        else:
          labels.append(schema.PAD_LABEL_ID)
          positions.append(schema.NO_WORD)
          score.append(0)
    length = len(pieces) + 2
    features.append(WindowFeatures(
        example_index=example_index,
        window_index=window_index,
        input_ids=tuple([cls_id] + tokenizer.convert_tokens_to_ids(pieces)
                        + [sep_id]),
        input_mask=(1,) * length,
        segment_ids=(0,) * length,
        label_ids=tuple([schema.PAD_LABEL_ID] + labels
                        + [schema.PAD_LABEL_ID]),
        word_positions=tuple([schema.NO_WORD] + positions + [schema.NO_WORD]),
        score_mask=tuple([0] + score + [0]),
    ))
  return features


def merge_window_outputs(window_outputs, num_words_per_example):
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
          raise ValueError("Word %d of sentence %d was scored twice."
                           % (word, example))
        value = output[key][position]
        slots[key][word] = value.item() if hasattr(value, "item") else value
  for example, slots in enumerate(merged):
    if slots is None:
      raise ValueError("Sentence %d got no prediction." % example)
    for key, values in slots.items():
      if None in values:
        raise ValueError("Sentence %d: word %d got no %s."
                         % (example, values.index(None), key))
  return merged


def derive_bucket_boundaries(length_histogram, num_buckets=8, multiple=8):
  """Length-bucket boundaries holding about equal numbers of windows.

  Args:
    length_histogram: {window length: count}.
    num_buckets: wanted number of buckets (fewer when lengths are few).
    multiple: round each bucket's upper length up to a multiple of this, so
      batch shapes repeat and kernels are reused.

  Returns:
    Ascending boundaries for `tf.data`'s `bucket_by_sequence_length`: a
    window of length n goes to the first bucket whose boundary is > n.

  Example: lengths 5 x 50, 12 x 30, 40 x 20 with 3 buckets
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
