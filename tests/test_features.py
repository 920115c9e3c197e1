"""Tests for trainer.features.windows (window planning, conversion, merging)."""

import pytest

from tests.import_checks import assert_imports_without_tensorflow
from trainer.features import windows as windows_lib
from trainer import schema
from trainer.features import tokenization

# Tiny uncased vocab: id = line number.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "john", "johan",
         "##son", "lives", "in", "new", "york", "city", "北", "京"]
CLS, SEP = 2, 3
LABELS = {"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("".join(v + "\n" for v in VOCAB), encoding="utf-8")
  return tokenization.NerTokenizer(str(path), do_lower_case=True)


@pytest.mark.parametrize("piece_counts, max_pieces, stride, expected", [
    ([1, 1, 1], 6, 2, [(0, 3)]),
    ([1, 2, 1, 1, 1, 1, 1], 6, 2, [(0, 5), (2, 7)]),
    ([1, 1, 1, 1, 1, 1, 1, 1], 4, 2, [(0, 4), (2, 6), (4, 8)]),
    # Stride larger than a window: the next window starts at the old end.
    ([1, 1, 1, 1, 1], 2, 5, [(0, 2), (2, 4), (4, 5)]),
    # A word longer than a window gets a window of its own.
    ([1, 9, 1], 4, 1, [(0, 1), (1, 2), (2, 3)]),
    ([], 4, 1, []),
])
def test_plan_windows(piece_counts, max_pieces, stride, expected):
  assert windows_lib.plan_windows(piece_counts, max_pieces, stride) == expected


def test_best_window_per_word():
  assert windows_lib.best_window_per_word([(0, 5), (2, 7)], 7) == [
      0, 0, 0, 0, 1, 1, 1]


def test_convert_short_sentence_exact_ids(tokenizer):
  words = ["John", "Johanson", "lives", "in", "New", "York"]
  tags = [1, 2, 0, 0, 3, 4]
  [window] = windows_lib.convert_sentence(words, tags, 7, tokenizer,
                                       max_seq_length=16, doc_stride=4)
  assert window == windows_lib.WindowFeatures(
      example_index=7, window_index=0,
      input_ids=(CLS, 5, 6, 7, 8, 9, 10, 11, SEP),
      input_mask=(1,) * 9,
      segment_ids=(0,) * 9,
      label_ids=(-1, 1, 2, -1, 0, 0, 3, 4, -1),
      word_positions=(-1, 0, 1, -1, 2, 3, 4, 5, -1),
      score_mask=(0, 1, 1, 0, 1, 1, 1, 1, 0))


def test_convert_long_sentence_into_windows(tokenizer):
  # The module docstring's walk-through: 8 pieces, 6 fit per window.
  words = ["John", "Johanson", "lives", "in", "New", "York", "City"]
  tags = [1, 2, 0, 0, 3, 4, 4]
  first, second = windows_lib.convert_sentence(words, tags, 0, tokenizer,
                                            max_seq_length=8, doc_stride=2)
  assert first.input_ids == (CLS, 5, 6, 7, 8, 9, 10, SEP)
  assert first.label_ids == (-1, 1, 2, -1, 0, 0, 3, -1)
  assert first.word_positions == (-1, 0, 1, -1, 2, 3, 4, -1)
  assert first.score_mask == (0, 1, 1, 0, 1, 1, 0, 0)
  assert second.window_index == 1
  assert second.input_ids == (CLS, 8, 9, 10, 11, 12, SEP)
  assert second.label_ids == (-1, 0, 0, 3, 4, 4, -1)
  assert second.word_positions == (-1, 2, 3, 4, 5, 6, -1)
  assert second.score_mask == (0, 0, 0, 1, 1, 1, 0)


def test_unknown_and_dropped_words_become_unk(tokenizer):
  # "\u200b" is removed by BERT's cleaning; it still gets a position.
  [window] = windows_lib.convert_sentence(["北", "\u200b", "上"], None, 0,
                                       tokenizer, 16, 4)
  assert window.input_ids == (CLS, 13, 1, 1, SEP)
  assert window.label_ids == (-1, -1, -1, -1, -1)
  assert window.word_positions == (-1, 0, 1, 2, -1)


def test_overlong_single_word_keeps_first_piece(tokenizer):
  [window] = windows_lib.convert_sentence(["Johanson"], [1], 0, tokenizer,
                                       max_seq_length=3, doc_stride=1)
  assert window.input_ids == (CLS, 6, SEP)
  assert window.label_ids == (-1, 1, -1)


def test_tag_count_mismatch_is_an_error(tokenizer):
  with pytest.raises(ValueError, match="Sentence 3 has 2 words but 1 tags"):
    windows_lib.convert_sentence(["john", "lives"], [0], 3, tokenizer, 8, 2)


def test_merge_round_trip_every_word_once(tokenizer):
  words = ["John", "Johanson", "lives", "in", "New", "York", "City"]
  windows = windows_lib.convert_sentence(words, [1, 2, 0, 0, 3, 4, 4], 0,
                                      tokenizer, 8, 2)
  short = windows_lib.convert_sentence(["New", "York"], [3, 4], 1, tokenizer, 8,
                                    2)
  outputs = []
  for window in windows + short:
    # Fake model output: the label id, plus 10 * window index to show which
    # window each word was taken from.
    outputs.append({
        schema.EXAMPLE_INDEX: window.example_index,
        schema.WORD_POSITIONS: list(window.word_positions) + [-1, -1],
        schema.SCORE_MASK: list(window.score_mask) + [0, 0],
        "value": [l + 10 * window.window_index for l in window.label_ids]
                 + [0, 0],
    })
  merged = windows_lib.merge_window_outputs(outputs, [7, 2])
  assert merged == [{"value": [1, 2, 0, 0, 13, 14, 14]}, {"value": [3, 4]}]


def test_merge_reports_missing_words():
  outputs = [{schema.EXAMPLE_INDEX: 0, schema.WORD_POSITIONS: [-1, 0, -1],
              schema.SCORE_MASK: [0, 1, 0], "value": [0, 5, 0]}]
  with pytest.raises(ValueError, match="Sentence 0: word 1 got no value"):
    windows_lib.merge_window_outputs(outputs, [2])
  with pytest.raises(ValueError, match="Sentence 1 got no prediction"):
    windows_lib.merge_window_outputs(outputs, [1, 1])


def test_as_dict_uses_schema_names(tokenizer):
  [window] = windows_lib.convert_sentence(["new"], [3], 4, tokenizer, 8, 2)
  assert window.as_dict() == {
      "example_index": 4, "window_index": 0, "input_ids": (CLS, 10, SEP),
      "input_mask": (1, 1, 1), "segment_ids": (0, 0, 0),
      "label_ids": (-1, 3, -1), "word_positions": (-1, 0, -1),
      "score_mask": (0, 1, 0)}


def test_features_module_does_not_import_tensorflow():
  assert_imports_without_tensorflow(
      "trainer.features.windows, trainer.evaluation.predictions")


@pytest.mark.parametrize("histogram, buckets, expected", [
    ({5: 50, 12: 30, 40: 20}, 3, [9, 17]),
    ({5: 50, 12: 30, 40: 20}, 8, [9, 17]),
    ({n: 1 for n in range(3, 67)}, 4, [25, 41, 57]),
    ({7: 3}, 4, []),
    ({}, 4, []),
])
def test_derive_bucket_boundaries(histogram, buckets, expected):
  assert windows_lib.derive_bucket_boundaries(histogram, buckets, 8) == expected


def test_default_buckets_are_narrow_and_even():
  histogram = {n: 1 for n in range(3, 67)}
  # 32 quantiles of 3..66 rounded up to even lengths: 4, 6, ..., 66.
  assert windows_lib.derive_bucket_boundaries(histogram) == list(
      range(5, 66, 2))
  assert windows_lib.derive_bucket_boundaries({5: 50, 12: 30, 40: 20}) == [
      7, 13]


@pytest.mark.parametrize("histogram, boundaries, expected", [
    ({5: 2, 8: 1, 20: 1}, [9], 6 / 44),
    ({5: 2, 8: 1, 20: 1}, [], (15 + 15 + 12) / 80),
    ({5: 2, 8: 1, 20: 1}, [6, 9, 21], 0.0),
    ({}, [9], 0.0),
])
def test_padding_bound_pads_each_bucket_to_its_longest(histogram, boundaries,
                                                        expected):
  assert windows_lib.padding_bound(histogram, boundaries) == pytest.approx(
      expected, abs=1e-12)


# --- Document context -------------------------------------------------------


@pytest.mark.parametrize("room, left, right, expected", [
    (10, 20, 20, (5, 5)),
    (11, 20, 20, (5, 6)),   # the odd position goes right
    (10, 3, 20, (3, 7)),    # a short side leaves its half to the other
    (10, 20, 3, (7, 3)),
    (10, 2, 3, (2, 3)),
    (0, 5, 5, (0, 0)),
    (10, 0, 0, (0, 0)),
])
def test_split_context_room(room, left, right, expected):
  assert windows_lib.split_context_room(room, left, right) == expected


def test_context_fills_the_room_with_no_label_no_word_no_score(tokenizer):
  # The convert_sentence docstring example: room 4, 2 left and 1 right fit.
  context = windows_lib.SentenceContext(left=("lives", "in"), right=("john",))
  [window] = windows_lib.convert_sentence(["New", "York"], [3, 4], 0, tokenizer,
                                       8, 2, context=context)
  assert window == windows_lib.WindowFeatures(
      example_index=0, window_index=0,
      input_ids=(CLS, 8, 9, 10, 11, 5, SEP),
      input_mask=(1,) * 7, segment_ids=(0,) * 7,
      label_ids=(-1, -1, -1, 3, 4, -1, -1),
      word_positions=(-1, -1, -1, 0, 1, -1, -1),
      score_mask=(0, 0, 0, 1, 1, 0, 0))


def test_context_keeps_the_pieces_nearest_the_sentence(tokenizer):
  context = windows_lib.SentenceContext(left=("john", "lives", "in"),
                                     right=("york", "city", "john"))
  [window] = windows_lib.convert_sentence(["New"], [3], 0, tokenizer, 5, 1,
                                       context=context)
  # Room 2: one piece each side, the nearest ones ("in" and "york").
  assert window.input_ids == (CLS, 9, 10, 11, SEP)
  assert window.label_ids == (-1, -1, 3, -1, -1)
  assert window.word_positions == (-1, -1, 0, -1, -1)
  assert window.score_mask == (0, 0, 1, 0, 0)


def test_long_sentence_context_only_at_its_ends(tokenizer):
  # Windows "john in" | "johan ##son" | "johan ##son" (3 pieces each at
  # most): left context goes only to the first window and right context only
  # to the last, so each window is a contiguous stretch of the document.
  context = windows_lib.SentenceContext(left=("york", "city"),
                                     right=("new", "york"))
  windows = windows_lib.convert_sentence(
      ["John", "in", "Johanson", "Johanson"], [1, 0, 1, 1], 0, tokenizer,
      max_seq_length=5, doc_stride=2, context=context)
  assert [w.input_ids for w in windows] == [
      (CLS, 12, 5, 9, SEP), (CLS, 6, 7, SEP), (CLS, 6, 7, 10, SEP)]
  assert [w.label_ids for w in windows] == [
      (-1, -1, 1, 0, -1), (-1, 1, -1, -1), (-1, 1, -1, -1, -1)]
  assert [w.word_positions for w in windows] == [
      (-1, -1, 0, 1, -1), (-1, 2, -1, -1), (-1, 3, -1, -1, -1)]
  assert [w.score_mask for w in windows] == [
      (0, 0, 1, 1, 0), (0, 1, 0, 0), (0, 1, 0, 0, 0)]


SENTENCES = [
    ["John", "Johanson", "lives", "in", "New", "York", "City"],
    ["北", "京"],
    ["Johanson"] * 5 + ["in", "New", "York"],
    ["city"],
]


@pytest.mark.parametrize("max_seq_length, doc_stride", [(3, 1), (5, 2),
                                                        (8, 2), (16, 4)])
@pytest.mark.parametrize("left_size, right_size", [(0, 0), (1, 0), (3, 7),
                                                   (20, 20)])
def test_context_keeps_every_sentence_window_and_word(
    tokenizer, max_seq_length, doc_stride, left_size, right_size):
  context = windows_lib.SentenceContext(
      left=tuple(["in", "york", "city"] * 7)[:left_size],
      right=tuple(["new", "york", "john"] * 7)[:right_size])
  left_ids = tokenizer.convert_tokens_to_ids(list(context.left))
  right_ids = tokenizer.convert_tokens_to_ids(list(context.right))
  outputs, sizes = [], []
  for index, words in enumerate(SENTENCES):
    plain = windows_lib.convert_sentence(words, None, index, tokenizer,
                                      max_seq_length, doc_stride)
    with_context = windows_lib.convert_sentence(
        words, None, index, tokenizer, max_seq_length, doc_stride,
        context=context)
    assert len(with_context) == len(plain)
    for window, bare in zip(with_context, plain):
      extra = len(window.input_ids) - len(bare.input_ids)
      assert len(window.input_ids) <= max_seq_length
      # Exactly one (left, right) split rebuilds the window around the bare
      # sentence pieces; context positions carry no label, word or score.
      splits = [(left, extra - left) for left in range(extra + 1)
                if window.input_ids == (
                    bare.input_ids[:1] + tuple(left_ids[len(left_ids) - left:])
                    + bare.input_ids[1:-1] + tuple(right_ids[:extra - left])
                    + bare.input_ids[-1:])]
      assert len(splits) == 1
      left, right = splits[0]
      for key in ("label_ids", "word_positions", "score_mask"):
        bare_values = getattr(bare, key)
        pad = 0 if key == "score_mask" else -1
        assert getattr(window, key) == (
            bare_values[:1] + (pad,) * left + bare_values[1:-1]
            + (pad,) * right + bare_values[-1:])
      outputs.append({schema.EXAMPLE_INDEX: index,
                      schema.WORD_POSITIONS: window.word_positions,
                      schema.SCORE_MASK: window.score_mask,
                      "word": window.word_positions})
    sizes.append(len(words))
  # Tokens in == tokens out: every word is predicted exactly once.
  assert windows_lib.merge_window_outputs(outputs, sizes) == [
      {"word": list(range(size))} for size in sizes]


def test_no_context_and_given_word_pieces_change_nothing(tokenizer):
  words = ["John", "Johanson", "lives", "in", "New", "York", "City"]
  tags = [1, 2, 0, 0, 3, 4, 4]
  plain = windows_lib.convert_sentence(words, tags, 3, tokenizer, 8, 2)
  assert windows_lib.convert_sentence(
      words, tags, 3, tokenizer, 8, 2, context=windows_lib.NO_CONTEXT,
      word_pieces=[tokenizer.tokenize_word(w) for w in words]) == plain
  # The module docstring's walk-through, unchanged.
  assert [w.input_ids for w in plain] == [(CLS, 5, 6, 7, 8, 9, 10, SEP),
                                          (CLS, 8, 9, 10, 11, 12, SEP)]
