"""Export: layout, versions, every signature, warmup records, best-model export."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tests import serving_fixtures
from trainer import export as export_lib
from trainer import features
from trainer import schema
from trainer import tokenization


@pytest.fixture(scope="module")
def served():
  return serving_fixtures.served_model()


@pytest.fixture(scope="module")
def loaded(served):
  return tf.saved_model.load(served["version_dir"])


def _windows(served, sentence_tokens):
  tokenizer = tokenization.NerTokenizer(served["vocab_file"], True)
  return features.convert_sentence(
      sentence_tokens, None, 0, tokenizer, serving_fixtures.MAX_SEQ_LENGTH,
      serving_fixtures.DOC_STRIDE)


def _merge(windows, tags, scores, num_words):
  outputs = [{schema.EXAMPLE_INDEX: 0,
              schema.WORD_POSITIONS: window.word_positions,
              schema.SCORE_MASK: window.score_mask,
              "tag": [t.decode() for t in tags[row][:len(window.input_ids)]],
              "score": scores[row][:len(window.input_ids)]}
             for row, window in enumerate(windows)]
  return features.merge_window_outputs(outputs, [num_words])[0]


def test_layout_config_and_monotonic_versions(served):
  version_dir = served["version_dir"]
  assert os.path.basename(version_dir) == "1"
  assert sorted(os.listdir(os.path.join(version_dir, "assets"))) == [
      "labels.txt", "vocab.txt"]
  assert sorted(os.listdir(os.path.join(version_dir, "assets.extra"))) == [
      "ner_config.json", "tf_serving_warmup_requests"]
  with open(os.path.join(version_dir, "assets", "labels.txt"),
            encoding="utf-8") as reader:
    labels = reader.read().split()
  with open(os.path.join(version_dir, "assets.extra", "ner_config.json"),
            encoding="utf-8") as reader:
    config = json.load(reader)
  assert config["labels"] == labels
  assert config["tokenizer"] == "char"
  assert config["signatures"] == ["serving_default", "predict_examples",
                                  "predict_text"]
  assert config["inputs"]["predict_text"] == ["text"]
  assert config["outputs"]["predict_text"] == ["label_ids", "lengths",
                                               "scores", "tags"]
  assert (config["max_seq_length"], config["doc_stride"],
          config["do_lower_case"]) == (16, 5, True)

  export_dir = os.path.join(served["root"], "versions_test")
  os.makedirs(os.path.join(export_dir, "7"))  # an existing (empty) version
  second = export_lib.export_model(
      export_dir, tf.train.latest_checkpoint(served["output_dir"]),
      served["bert_config_file"], served["vocab_file"],
      served["labels_file"], served["ner_config"])
  assert second == os.path.join(export_dir, "8")
  assert sorted(os.listdir(export_dir)) == ["7", "8"]  # no temp folder left


def test_saved_model_cli_lists_every_signature(served):
  result = subprocess.run(
      [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show",
       "--dir", served["version_dir"], "--all"],
      capture_output=True, text=True, timeout=120, check=True)
  for name in schema.SIGNATURES:
    assert "signature_def['%s']" % name in result.stdout
  assert "inputs['text'] tensor_info" in result.stdout


def test_every_signature_matches_the_trainer(served, loaded):
  """serving_default, predict_examples and predict_text == predictions.jsonl."""
  assert set(loaded.signatures) == set(schema.SIGNATURES)
  for record in served["records"]:
    windows = _windows(served, record["tokens"])
    ids = {key: tf.constant(
        [list(getattr(w, key)) + [0] * (16 - len(w.input_ids))
         for w in windows], tf.int32) for key in schema.MODEL_INPUT_KEYS}
    direct = loaded.signatures["serving_default"](**ids)
    examples = [tf.train.Example(features=tf.train.Features(feature={
        key: tf.train.Feature(int64_list=tf.train.Int64List(
            value=getattr(w, key)))
        for key in schema.MODEL_INPUT_KEYS})).SerializeToString()
                for w in windows]
    parsed = loaded.signatures["predict_examples"](
        examples=tf.constant(examples))
    for outputs in (direct, parsed):
      assert outputs["tags"].dtype == tf.string
      assert outputs["label_ids"].dtype == tf.int32
      merged = _merge(windows, outputs["tags"].numpy(),
                      outputs["scores"].numpy(), len(record["tokens"]))
      assert merged["tag"] == record["tags"]
      np.testing.assert_allclose(merged["score"], record["scores"], atol=1e-5)

  texts = serving_fixtures.CJK_ONLY_PREDICT
  outputs = loaded.signatures["predict_text"](text=tf.constant(texts))
  assert outputs["lengths"].numpy().tolist() == [len(t) for t in texts]
  for row, (text, record) in enumerate(zip(texts, served["records"])):
    tags = [t.decode() for t in outputs["tags"].numpy()[row][:len(text)]]
    # The space in "李四 去北京开会。" is no token, as for the trainer.
    assert [i for i, t in enumerate(tags) if t == ""] == [
        i for i, c in enumerate(text) if c.isspace()]
    scores = outputs["scores"].numpy()[row][:len(text)]
    assert [t for t in tags if t] == record["tags"]
    np.testing.assert_allclose([s for t, s in zip(tags, scores) if t],
                               record["scores"], atol=1e-5)
    assert outputs["tags"].numpy()[row][len(text):].tolist() == [b""] * (
        outputs["tags"].shape[1] - len(text))


def test_predict_text_edge_cases(loaded):
  predict_text = loaded.signatures["predict_text"]
  outputs = predict_text(text=tf.constant(
      ["", "   ", serving_fixtures.UNSEEN_TEXT, "张三"]))
  assert outputs["lengths"].numpy().tolist() == [0, 3, 2, 2]
  tags = outputs["tags"].numpy()
  assert tags[1][:3].tolist() == [b"", b"", b""]
  assert all(tag != b"" for tag in tags[2][:2])  # [UNK] characters get a tag
  with pytest.raises(tf.errors.InvalidArgumentError, match="max_text_chars"):
    predict_text(text=tf.constant(["张" * (export_lib.DEFAULT_MAX_TEXT_CHARS
                                          + 1)]))
  with pytest.raises(tf.errors.InvalidArgumentError):
    predict_text(text=tf.constant([b"\xff\xfe"]))  # not UTF-8


@pytest.mark.parametrize("num_tokens,max_seq_length,doc_stride", [
    (1, 5, 2), (3, 5, 2), (4, 5, 2), (9, 5, 2), (10, 6, 1), (23, 8, 3),
    (17, 7, 9), (40, 16, 5)])
def test_in_graph_windows_equal_the_trainer_windows(num_tokens, max_seq_length,
                                                    doc_stride):
  """text_features/select_text_outputs == plan_windows/best_window_per_word."""
  text = "".join(chr(0x4E00 + i) for i in range(num_tokens))
  table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
      [text[0]], np.array([9], np.int64)), default_value=1)
  window_features, layout = export_lib.text_features(
      tf.constant([text, "a b"]), table, 2, 3, True, max_seq_length,
      doc_stride, 100)
  windows = features.plan_windows([1] * num_tokens, max_seq_length - 2,
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
  fake = tf.constant([["w%dp%d" % (r, p) for p in range(positions)]
                      for r in range(rows)])
  selected = export_lib.select_text_outputs(
      {"tags": fake, "label_ids": tf.zeros([rows, positions], tf.int32),
       "scores": tf.zeros([rows, positions])}, layout)
  best = features.best_window_per_word(windows, num_tokens)
  expected = ["w%dp%d" % (best[i], i - windows[best[i]][0] + 1)
              for i in range(num_tokens)]
  assert [t.decode() for t in selected["tags"].numpy()[0][:num_tokens]] == \
      expected
  last = len(windows)
  assert [t.decode() for t in selected["tags"].numpy()[1][:3]] == [
      "w%dp1" % last, "", "w%dp2" % last]
  assert selected["label_ids"].numpy()[1][:3].tolist() == [0, -1, 0]


def test_warmup_records_parse_and_run(served, loaded):
  path = os.path.join(served["version_dir"], "assets.extra",
                      "tf_serving_warmup_requests")
  signatures = []
  for record in tf.data.TFRecordDataset(path):
    log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    request = log.predict_log.request
    assert request.model_spec.name == schema.DEFAULT_MODEL_NAME
    signature = request.model_spec.signature_name
    outputs = loaded.signatures[signature](**{
        key: tf.constant(tf.make_ndarray(proto))
        for key, proto in request.inputs.items()})
    assert outputs["tags"].shape[0] == request.inputs[
        next(iter(request.inputs))].tensor_shape.dim[0].size
    signatures.append(signature)
  assert signatures == list(schema.SIGNATURES)


def test_export_best_keeps_only_improvements(served):
  best_dir = os.path.join(served["root"], "export_best")
  args = (tf.train.latest_checkpoint(served["output_dir"]),
          served["bert_config_file"], served["vocab_file"],
          served["labels_file"], served["ner_config"])
  first = export_lib.export_best(best_dir, {"entity_f1": 0.5}, *args)
  assert first == os.path.join(best_dir, "1")
  assert export_lib.export_best(best_dir, {"entity_f1": 0.5}, *args) is None
  assert export_lib.export_best(best_dir, {"entity_f1": 0.25}, *args) is None
  with open(os.path.join(best_dir, "best_export.json"),
            encoding="utf-8") as reader:
    assert json.load(reader)["value"] == 0.5
  with pytest.raises(ValueError, match="entity_f1"):
    export_lib.export_best(best_dir, {"loss": 1.0}, *args)


def test_tokenizer_kind_detection():
  specials = {token: i for i, token in enumerate(schema.SPECIAL_TOKENS)}
  chinese = dict(specials, **{"的": 5, "##的": 6, "北": 7, "京": 8, "abc": 9})
  english = dict(specials, **{"the": 5, "##s": 6, "a": 7, "york": 8})
  assert export_lib.is_character_vocab(chinese)
  assert not export_lib.is_character_vocab(english)
  assert export_lib.resolve_tokenizer_kind({}, chinese) == "char"
  assert export_lib.resolve_tokenizer_kind({}, english) == "wordpiece"
  assert export_lib.resolve_tokenizer_kind({"tokenizer": "wordpiece"},
                                           chinese) == "wordpiece"
  with pytest.raises(ValueError, match="'bpe' is not one of char, wordpiece"):
    export_lib.resolve_tokenizer_kind({"tokenizer": "bpe"}, chinese)


def test_character_table_matches_the_training_tokenizer(served):
  tokenizer = tokenization.NerTokenizer(served["vocab_file"], True)
  table = export_lib.character_table(tokenizer)
  vocab = tokenizer.vocab
  assert table["张"] == vocab["张"]
  assert "Z" not in table  # looked up lower-cased
  # Single characters of the vocab map to themselves; nothing maps to [UNK].
  assert all(table[p] == i for p, i in vocab.items() if len(p) == 1)
  assert vocab[schema.UNK_TOKEN] not in table.values()
