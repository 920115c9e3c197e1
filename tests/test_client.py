"""Client request building and response parsing, without a server."""

import base64
import socket

import numpy as np
import pytest

from serving import client
from trainer import features

VOCAB = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4,
         "张": 5, "三": 6, "去": 7, "北": 8, "京": 9, "ok": 10, "##s": 11}
LABELS = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]


class DictTokenizer:
  """Whole words from VOCAB ("oks" -> ok ##s), else [UNK]."""

  def tokenize_word(self, word):
    word = word.lower()
    if word in VOCAB:
      return [word]
    if word.endswith("s") and word[:-1] in VOCAB:
      return [word[:-1], "##s"]
    return ["[UNK]"]

  def convert_tokens_to_ids(self, pieces):
    return [VOCAB[piece] for piece in pieces]


def test_sentences_from_texts_split_like_the_trainer():
  sentences = client.sentences_from_texts(["张三 去北京, OKs", "", "  "])
  assert sentences[0].tokens == ("张", "三", "去", "北", "京", ",", "OKs")
  assert sentences[0].char_spans == ((0, 1), (1, 2), (3, 4), (4, 5), (5, 6),
                                     (6, 7), (8, 11))
  assert sentences[1].tokens == () and sentences[2].tokens == ()
  with pytest.raises(ValueError, match="Text 0 is bytes"):
    client.sentences_from_texts([b"x"])


def test_window_inputs_pad_like_the_input_pipeline():
  sentences = client.sentences_from_texts(["张三 OKs", "", "北"])
  windows = client.build_windows(sentences, DictTokenizer(), 8, 2)
  assert [w.example_index for w in windows] == [0, 2]
  inputs = client.window_inputs(windows, "serving_default")
  assert inputs["input_ids"].tolist() == [[2, 5, 6, 10, 11, 3],
                                          [2, 8, 3, 0, 0, 0]]
  assert inputs["input_mask"].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
  assert inputs["segment_ids"].tolist() == [[0] * 6] * 2
  assert inputs["input_ids"].dtype == np.int32

  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  examples = client.window_inputs(windows, "predict_examples")["examples"]
  parsed = example_pb2.Example.FromString(examples[0]).features.feature
  assert list(parsed["input_ids"].int64_list.value) == [2, 5, 6, 10, 11, 3]
  assert list(parsed["word_positions"].int64_list.value) == [-1, 0, 1, 2, -1,
                                                             -1]
  with pytest.raises(ValueError, match="not 'predict_text'"):
    client.window_inputs(windows, "predict_text")


def test_rest_body_and_outputs_round_trip():
  inputs = {"input_ids": np.array([[2, 5, 3]], np.int32)}
  assert client.build_rest_body(inputs, "serving_default") == {
      "signature_name": "serving_default",
      "inputs": {"input_ids": [[2, 5, 3]]}}
  body = client.build_rest_body(
      {"examples": np.array([b"\xff\x00"], object)}, "predict_examples")
  assert body["inputs"]["examples"] == [
      {"b64": base64.b64encode(b"\xff\x00").decode()}]
  body = client.build_rest_body({"text": np.array(["北京".encode()], object)},
                                "predict_text")
  assert body["inputs"]["text"] == ["北京"]
  outputs = client.parse_rest_outputs({"outputs": {
      "tags": [["O", "B-LOC"]], "label_ids": [[0, 1]], "scores": [[0.5, 1.0]]}})
  assert outputs["tags"].tolist() == [[b"O", b"B-LOC"]]
  assert outputs["label_ids"].tolist() == [[0, 1]]
  with pytest.raises(client.PredictionError, match="no 'outputs'"):
    client.parse_rest_outputs({"predictions": []})


def test_records_from_window_outputs_give_char_offsets():
  texts = ["张三去北京", "", "OKs 北京"]
  sentences = client.sentences_from_texts(texts)
  windows = client.build_windows(sentences, DictTokenizer(), 5, 1)
  # Long first sentence: 5 words, 3 per window -> several windows.
  assert len([w for w in windows if w.example_index == 0]) == 3
  label = {"张": 2, "三": 4, "去": 0, "北": 1, "京": 3, "ok": 0}
  id_to_piece = {i: p for p, i in VOCAB.items()}
  rows = []
  for window in windows:
    rows.append([label.get(id_to_piece[i], 0) for i in window.input_ids])
  length = max(len(row) for row in rows)
  outputs = {"label_ids": np.array([r + [0] * (length - len(r)) for r in rows]),
             "scores": np.full([len(rows), length], 0.5)}
  merged = client.window_outputs_for_merge(windows, outputs)
  records = client.records_from_window_outputs(sentences, merged, LABELS)
  assert records[0]["tags"] == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
  assert [client.entities_from_record(r) for r in records] == [
      [{"type": "PER", "text": "张三", "start": 0, "end": 2, "score": 0.5},
       {"type": "LOC", "text": "北京", "start": 3, "end": 5, "score": 0.5}],
      [],
      [{"type": "LOC", "text": "北京", "start": 4, "end": 6, "score": 0.5}]]
  with pytest.raises(client.PredictionError, match="sent 5 windows, got 1"):
    client.window_outputs_for_merge(windows, {
        "label_ids": np.zeros([1, 3]), "scores": np.zeros([1, 3])})


def test_records_from_text_outputs_skip_whitespace():
  texts = ["张三 北京", ""]
  outputs = {"tags": np.array([[b"B-PER", b"I-PER", b"", b"B-LOC", b"I-LOC"],
                               [b""] * 5], object),
             "scores": np.array([[0.9, 0.7, 0.0, 1.0, 1.0], [0.0] * 5]),
             "lengths": np.array([5, 0])}
  records = client.records_from_text_outputs(texts, outputs)
  assert records[0]["tokens"] == ["张", "三", "北", "京"]
  assert client.entities_from_record(records[0]) == [
      {"type": "PER", "text": "张三", "start": 0, "end": 2, "score": 0.8},
      {"type": "LOC", "text": "北京", "start": 3, "end": 5, "score": 1.0}]
  assert records[1]["entities"] == []
  outputs["lengths"] = np.array([4, 0])
  with pytest.raises(client.PredictionError, match="server counted 4"):
    client.records_from_text_outputs(texts, outputs)


class RecordingTransport:
  """Answers every window with label O, records request sizes."""

  def __init__(self):
    self.batch_sizes = []

  def predict(self, signature_name, inputs):
    key = ("text" if signature_name == "predict_text" else
           "examples" if signature_name == "predict_examples" else "input_ids")
    batch = len(inputs[key])
    self.batch_sizes.append(batch)
    if signature_name == "predict_text":
      texts = [t.decode() for t in inputs["text"]]
      width = max(len(t) for t in texts)
      return {"tags": np.array([[b"O"] * len(t) + [b""] * (width - len(t))
                                for t in texts], object),
              "scores": np.ones([batch, width]),
              "lengths": np.array([len(t) for t in texts])}
    return {"label_ids": np.zeros([batch, 40], np.int32),
            "scores": np.ones([batch, 40], np.float32)}

  def close(self):
    pass


def test_client_batches_windows_and_needs_assets(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("".join(p + "\n" for p in VOCAB), encoding="utf-8")
  labels = tmp_path / "labels.txt"
  labels.write_text("".join(l + "\n" for l in LABELS), encoding="utf-8")
  transport = RecordingTransport()
  ner = client.NerClient(
      vocab_file=str(vocab), labels_file=str(labels),
      ner_config={"max_seq_length": 8, "doc_stride": 2,
                  "do_lower_case": True},
      batch_size=3, transport=transport)
  texts = ["张三去北京"] * 5 + ["张" * 20]
  records = ner.predict_records(texts)
  assert [len(r["tags"]) for r in records] == [5] * 5 + [20]
  # 5 one-window texts + 8 windows of the long one, 3 per request.
  assert transport.batch_sizes == [3, 3, 3, 3, 1]
  assert ner.predict(["北京"]) == [[]]

  text_client = client.NerClient(signature="predict_text", batch_size=4,
                                 transport=RecordingTransport())
  assert text_client.predict(["北京", "", "张 三"]) == [[], [], []]
  with pytest.raises(ValueError, match="needs vocab_file, labels_file"):
    client.NerClient("localhost:1")
  with pytest.raises(ValueError, match="protocol='http'"):
    client.NerClient("localhost:1", protocol="http")


def test_retries_then_gives_up_with_backoff(monkeypatch):
  sleeps = []
  monkeypatch.setattr(client.time, "sleep", sleeps.append)
  calls = []

  def flaky():
    calls.append(1)
    if len(calls) < 3:
      raise client.PredictionError("UNAVAILABLE", "starting")
    return "ok"

  retryable = lambda error: error.code == "UNAVAILABLE"
  assert client._with_retries(flaky, 3, 0.1, retryable) == "ok"
  assert sleeps == [0.1, 0.2]
  calls.clear()
  with pytest.raises(client.PredictionError, match="UNAVAILABLE"):
    client._with_retries(flaky, 1, 0.1, retryable)
  assert len(calls) == 2

  def invalid():
    calls.append(1)
    raise client.PredictionError("INVALID_ARGUMENT", "bad")

  calls.clear()
  with pytest.raises(client.PredictionError, match="INVALID_ARGUMENT"):
    client._with_retries(invalid, 5, 0.1, retryable)
  assert len(calls) == 1


def _closed_port():
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


@pytest.mark.parametrize("transport_class", [client.GrpcTransport,
                                             client.RestTransport])
def test_unreachable_server_is_unavailable_after_retries(transport_class):
  transport = transport_class("127.0.0.1:%d" % _closed_port(), "ner",
                              timeout_s=2.0, max_retries=2, backoff_s=0.01)
  with pytest.raises(client.PredictionError) as error:
    transport.predict("serving_default",
                      {"input_ids": np.zeros([1, 3], np.int32)})
  assert error.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
  transport.close()


def test_batches():
  assert client.batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
  assert client.batches([], 2) == []


def test_merge_reuses_the_trainer_function():
  # The client merges with the trainer's function, not a copy of it.
  assert client.features_lib.merge_window_outputs is \
      features.merge_window_outputs
