"""Export: layout, versions, every signature, warmup records, best-model export.

predict_text's in-graph tokenizer is tested in test_text_signature.py.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tests import serving_fixtures
from trainer.export import exporter as export_lib
from trainer.features import windows as windows_lib
from trainer import schema
from trainer.features import tokenization


@pytest.fixture(scope="module")
def served():
  return serving_fixtures.served_model()


@pytest.fixture(scope="module")
def loaded(served):
  return tf.saved_model.load(served["version_dir"])


def _windows(served, sentence_tokens):
  tokenizer = tokenization.NerTokenizer(served["vocab_file"], True)
  return windows_lib.convert_sentence(
      sentence_tokens, None, 0, tokenizer, serving_fixtures.MAX_SEQ_LENGTH,
      serving_fixtures.DOC_STRIDE)


def _merge(windows, tags, scores, num_words):
  outputs = [{schema.EXAMPLE_INDEX: 0,
              schema.WORD_POSITIONS: window.word_positions,
              schema.SCORE_MASK: window.score_mask,
              "tag": [t.decode() for t in tags[row][:len(window.input_ids)]],
              "score": scores[row][:len(window.input_ids)]}
             for row, window in enumerate(windows)]
  return windows_lib.merge_window_outputs(outputs, [num_words])[0]


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
  # The limits the graph checks, for the development server's pre-checks.
  assert {key: config[key] for key in (
      "vocab_size", "type_vocab_size", "max_position_embeddings")} == \
      serving_fixtures.model_limits()

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
    assert f"signature_def['{name}']" in result.stdout
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




def _tokenizer(tmp_path, pieces):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("".join(piece + "\n" for piece in pieces), encoding="utf-8")
  return tokenization.NerTokenizer(str(vocab), True)


def test_warmup_inputs_use_ordinary_pieces(tmp_path):
  tokenizer = _tokenizer(tmp_path, list(schema.SPECIAL_TOKENS) + [
      "[unused1]", "张", "##三", "三", "ab", "北", "京", "上", "海", "天"])
  inputs = export_lib._warmup_inputs(tokenizer, list(schema.SIGNATURES))
  assert list(inputs) == list(schema.SIGNATURES)
  window = inputs["serving_default"]
  # [CLS] 张 三 ab 北 [SEP]: "[unused1]" and "##三" are not ordinary.
  assert window["input_ids"].tolist() == [[2, 6, 8, 9, 10, 3]]
  assert window["input_mask"].tolist() == [[1] * 6]
  assert window["segment_ids"].tolist() == [[0] * 6]
  example = tf.train.Example.FromString(
      inputs["predict_examples"]["examples"][0])
  assert list(example.features.feature["input_ids"].int64_list.value) == [
      2, 6, 8, 9, 10, 3]
  assert inputs["predict_text"]["text"].tolist() == [
      "张三北京上海".encode("utf-8"), b""]
  only = export_lib._warmup_inputs(tokenizer, ["serving_default"])
  assert list(only) == ["serving_default"]


def test_export_settings_fill_defaults_and_name_missing_keys():
  assert export_lib._export_settings(
      {"max_seq_length": "16", "do_lower_case": 1}) == {
          "max_seq_length": 16, "doc_stride": 8, "do_lower_case": True,
          "max_text_chars": 8192}
  assert export_lib._export_settings(
      {"max_seq_length": 16, "do_lower_case": False, "doc_stride": 5,
       "max_text_chars": 100})["doc_stride"] == 5
  with pytest.raises(ValueError, match=r"ner_config lacks 'do_lower_case' "
                                       r"\(needed for export\); it has "
                                       r"\['max_seq_length'\]"):
    export_lib._export_settings({"max_seq_length": 16})


def test_export_refuses_a_missing_checkpoint_or_too_long_windows(served):
  with pytest.raises(ValueError, match="Checkpoint /no/model.ckpt-1 does not "
                                       "exist"):
    export_lib._read_bert_config("/no/model.ckpt-1",
                                 served["bert_config_file"], 16)
  checkpoint = tf.train.latest_checkpoint(served["output_dir"])
  with pytest.raises(ValueError, match="Cannot export with max_seq_length 65 "
                                       "because the BERT model was only "
                                       "trained up to sequence length 64"):
    export_lib._read_bert_config(checkpoint, served["bert_config_file"], 65)


def test_example_features_take_or_derive_word_positions():
  head = export_lib.model_lib.HeadConfig(continuation_ids=(0, 2, 3, 7))
  bert_config = export_lib.modeling.BertConfig(vocab_size=8)

  def example(**lists):
    return tf.train.Example(features=tf.train.Features(feature={
        key: tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        for key, values in lists.items()})).SerializeToString()

  ids = {"input_ids": [2, 5, 7, 3], "input_mask": [1, 1, 1, 1],
         "segment_ids": [0, 0, 0, 0]}
  given = export_lib._example_features(tf.constant([
      example(**ids, word_positions=[-1, 0, 1, -1]),
      example(input_ids=[2, 3], input_mask=[1, 1], segment_ids=[0, 0],
              word_positions=[-1, -1])]), head, bert_config)
  assert given["word_positions"].numpy().tolist() == [[-1, 0, 1, -1],
                                                      [-1, -1, -1, -1]]
  assert given["input_ids"].numpy().tolist() == [[2, 5, 7, 3], [2, 3, 0, 0]]
  # Without word_positions: a word starts at each real non-continuation piece.
  derived = export_lib._example_features(tf.constant([example(**ids)]), head,
                                         bert_config)
  assert derived["word_positions"].numpy().tolist() == [[-1, 0, -1, -1]]


def test_publish_takes_the_next_free_number(tmp_path):
  export_dir = tmp_path / "export"
  (export_dir / "1").mkdir(parents=True)
  (export_dir / "3").write_text("a file named like a version")
  staging = export_dir / ".tmp-export-abc"
  staging.mkdir()
  (staging / "saved_model.pb").write_bytes(b"x")
  version_dir = export_lib._publish(str(staging), str(export_dir))
  assert version_dir == str(export_dir / "4")
  assert sorted(os.listdir(export_dir)) == ["1", "3", "4"]
  assert (export_dir / "4" / "saved_model.pb").read_bytes() == b"x"
