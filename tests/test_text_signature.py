"""predict_text's in-graph tokenizer: vocab detection, table, windows, outputs.
"""

import numpy as np
import pytest
import tensorflow as tf

from tests import serving_fixtures
from trainer.features import windows as windows_lib
from trainer import schema
from trainer.export import text_signature
from trainer.features import tokenization


@pytest.fixture(scope="module")
def served():
  return serving_fixtures.served_model()


def _table(mapping, default=1):
  initializer = tf.lookup.KeyValueTensorInitializer(
      list(mapping), np.array(list(mapping.values()), np.int64))
  return tf.lookup.StaticHashTable(initializer, default_value=default)


def test_predict_text_edge_cases(served):
  predict_text = tf.saved_model.load(
      served["version_dir"]).signatures["predict_text"]
  outputs = predict_text(text=tf.constant(
      ["", "   ", serving_fixtures.UNSEEN_TEXT, "张三"]))
  assert outputs["lengths"].numpy().tolist() == [0, 3, 2, 2]
  tags = outputs["tags"].numpy()
  assert tags[1][:3].tolist() == [b"", b"", b""]
  assert all(tag != b"" for tag in tags[2][:2])  # [UNK] characters get a tag
  with pytest.raises(tf.errors.InvalidArgumentError, match="max_text_chars"):
    predict_text(text=tf.constant(
        ["张" * (text_signature.DEFAULT_MAX_TEXT_CHARS + 1)]))
  with pytest.raises(tf.errors.InvalidArgumentError):
    predict_text(text=tf.constant([b"\xff\xfe"]))  # not UTF-8


@pytest.mark.parametrize("num_tokens,max_seq_length,doc_stride", [
    (1, 5, 2), (3, 5, 2), (4, 5, 2), (9, 5, 2), (10, 6, 1), (23, 8, 3),
    (17, 7, 9), (40, 16, 5)])
def test_in_graph_windows_equal_the_trainer_windows(num_tokens, max_seq_length,
                                                    doc_stride):
  """text_features/select_text_outputs == plan_windows/best_window_per_word."""
  text = "".join(chr(0x4E00 + i) for i in range(num_tokens))
  table = _table({text[0]: 9})
  window_features, layout = text_signature.text_features(
      tf.constant([text, "a b"]), table, 2, 3, True, max_seq_length,
      doc_stride, 100)
  windows = windows_lib.plan_windows([1] * num_tokens, max_seq_length - 2,
                                  doc_stride)
  input_ids = window_features["input_ids"].numpy()
  assert input_ids.shape[0] == len(windows) + 1
  for row, (start, end) in enumerate(windows):
    expected = [2] + [9 if i == 0 else 1 for i in range(start, end)] + [3]
    assert input_ids[row][:len(expected)].tolist() == expected
    assert window_features["input_mask"].numpy()[row].sum() == len(expected)
  # "a b": two tokens a and b (the space is none), both [UNK] (1).
  assert input_ids[-1][:4].tolist() == [2, 1, 1, 3]

  rows, positions = input_ids.shape
  fake = tf.constant([[f"w{r}p{p}" for p in range(positions)]
                      for r in range(rows)])
  selected = text_signature.select_text_outputs(
      {"tags": fake, "label_ids": tf.zeros([rows, positions], tf.int32),
       "scores": tf.zeros([rows, positions])}, layout)
  best = windows_lib.best_window_per_word(windows, num_tokens)
  expected = [f"w{best[i]}p{i - windows[best[i]][0] + 1}"
              for i in range(num_tokens)]
  assert [t.decode() for t in selected["tags"].numpy()[0][:num_tokens]] == \
      expected
  last = len(windows)
  assert [t.decode() for t in selected["tags"].numpy()[1][:3]] == [
      f"w{last}p1", "", f"w{last}p2"]
  assert selected["label_ids"].numpy()[1][:3].tolist() == [0, -1, 0]


def test_tokenizer_kind_detection():
  specials = {token: i for i, token in enumerate(schema.SPECIAL_TOKENS)}
  chinese = dict(specials, **{"的": 5, "##的": 6, "北": 7, "京": 8, "abc": 9})
  english = dict(specials, **{"the": 5, "##s": 6, "a": 7, "york": 8})
  assert text_signature.is_character_vocab(chinese)
  assert not text_signature.is_character_vocab(english)
  assert text_signature.resolve_tokenizer_kind({}, chinese) == "char"
  assert text_signature.resolve_tokenizer_kind({}, english) == "wordpiece"
  assert text_signature.resolve_tokenizer_kind({"tokenizer": "wordpiece"},
                                           chinese) == "wordpiece"
  with pytest.raises(ValueError, match="'bpe' is not one of char, wordpiece"):
    text_signature.resolve_tokenizer_kind({"tokenizer": "bpe"}, chinese)


def test_character_table_matches_the_training_tokenizer(served):
  tokenizer = tokenization.NerTokenizer(served["vocab_file"], True)
  table = text_signature.character_table(tokenizer)
  vocab = tokenizer.vocab
  assert table["张"] == vocab["张"]
  assert "Z" not in table  # looked up lower-cased
  # Single characters of the vocab map to themselves; nothing maps to [UNK].
  assert all(table[p] == i for p, i in vocab.items() if len(p) == 1)
  assert vocab[schema.UNK_TOKEN] not in table.values()


def test_bracketed_pieces_do_not_count_as_ordinary():
  specials = {token: i for i, token in enumerate(schema.SPECIAL_TOKENS)}
  # 2 of the 4 ordinary pieces are characters; counting "[unusedN]" as
  # ordinary would make it 2 of 7 and the vocab word-level.
  vocab = dict(specials, **{"[unused1]": 5, "[unused2]": 6, "[unused3]": 7,
                            "的": 8, "北": 9, "abc": 10, "de": 11})
  assert text_signature.is_character_vocab(vocab)
  assert not text_signature.is_character_vocab(specials)


def test_character_tokens_drop_whitespace_and_look_up():
  num_chars, is_token, token_ids = text_signature._character_tokens(
      tf.constant(["a b", "", "AB"]), _table({"a": 7}), True, 100)
  assert num_chars.numpy().tolist() == [3, 0, 2]
  assert is_token.to_list() == [[True, False, True], [], [True, True]]
  assert token_ids.to_list() == [[7, 1], [], [7, 1]]  # "A" lower-cased


def test_window_features_cut_windows_like_the_docstring():
  token_ids = tf.ragged.constant([[5, 6, 7, 8]], tf.int32)
  got = text_signature._window_features(
      token_ids, tf.constant([4]), tf.constant([2]), stride=2, max_pieces=3,
      cls_id=2, sep_id=3)
  assert got["input_ids"].numpy().tolist() == [[2, 5, 6, 7, 3],
                                               [2, 7, 8, 3, 0]]
  assert got["input_mask"].numpy().tolist() == [[1, 1, 1, 1, 1],
                                                [1, 1, 1, 1, 0]]
  assert got["segment_ids"].numpy().tolist() == [[0] * 5, [0] * 5]
  assert got["word_positions"].numpy().tolist() == [[-1, 0, 1, 2, -1],
                                                    [-1, 2, 3, -1, -1]]


def test_select_text_outputs_maps_tokens_back_to_characters():
  window_features, layout = text_signature.text_features(
      tf.constant(["a b"]), _table({"a": 7, "b": 8}), 2, 3, True, 8, 4, 100)
  assert window_features["input_ids"].numpy().tolist() == [[2, 7, 8, 3]]
  selected = text_signature.select_text_outputs(
      {"tags": tf.constant([["O", "B-X", "I-X", "O"]]),
       "label_ids": tf.constant([[0, 1, 2, 0]]),
       "scores": tf.constant([[0.5, 0.75, 0.25, 0.5]])}, layout)
  assert selected["tags"].numpy().tolist() == [[b"B-X", b"", b"I-X"]]
  assert selected["label_ids"].numpy().tolist() == [[1, -1, 2]]
  assert selected["scores"].numpy().tolist() == [[0.75, 0.0, 0.25]]
  assert selected["lengths"].numpy().tolist() == [3]


def test_build_text_signature_in_a_graph(served):
  tokenizer = tokenization.NerTokenizer(served["vocab_file"], True)
  vocab = tokenizer.vocab

  def fake_model(window_features):
    ids = window_features["input_ids"]
    return {"tags": tf.strings.as_string(ids),
            "label_ids": ids, "scores": tf.cast(ids, tf.float32)}

  with tf.Graph().as_default() as graph:
    inputs, outputs = text_signature.build_text_signature(
        tokenizer, fake_model, 16, 5, 100)
    with tf.compat.v1.Session(graph=graph) as session:
      session.run(tf.compat.v1.tables_initializer())
      got = session.run(outputs, {inputs["text"]: ["张 Z"]})
  assert got["label_ids"].tolist() == [[vocab["张"], -1, vocab["z"]]]
  assert got["tags"].tolist() == [[str(vocab["张"]).encode(), b"",
                                   str(vocab["z"]).encode()]]
  assert got["lengths"].tolist() == [3]
