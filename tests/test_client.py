"""NerClient and its CLI, with a recording transport instead of a server."""

import json
import re

import numpy as np
import pytest

from tests.import_checks import assert_imports_without_tensorflow
from serving.client import client
from serving.client import request_codec

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "张", "三", "去", "北",
         "京", "ok", "##s"]
LABELS = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]


class RecordingTransport:
  """Answers every window with label O, records request sizes."""

  def __init__(self):
    self.batch_sizes = []
    self.signatures = []
    self.closed = False

  def predict(self, signature_name, inputs):
    key = ("text" if signature_name == "predict_text" else
           "examples" if signature_name == "predict_examples" else "input_ids")
    batch = len(inputs[key])
    self.batch_sizes.append(batch)
    self.signatures.append(signature_name)
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
    self.closed = True


def _assets(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("".join(p + "\n" for p in VOCAB), encoding="utf-8")
  labels = tmp_path / "labels.txt"
  labels.write_text("".join(l + "\n" for l in LABELS), encoding="utf-8")
  return str(vocab), str(labels)


def test_client_batches_windows_and_needs_assets(tmp_path):
  vocab, labels = _assets(tmp_path)
  transport = RecordingTransport()
  ner = client.NerClient(
      vocab_file=vocab, labels_file=labels,
      ner_config={"max_seq_length": 8, "doc_stride": 2,
                  "do_lower_case": True},
      batch_size=3, transport=transport)
  texts = ["张三去北京"] * 5 + ["张" * 20]
  records = ner.predict_records(texts)
  assert [len(r["tags"]) for r in records] == [5] * 5 + [20]
  # 5 one-window texts (7 pieces) + 8 windows of the long one (8 pieces),
  # at most 3 per request, the short ones apart from the long ones.
  assert transport.batch_sizes == [2, 3, 2, 3, 3]
  assert set(transport.signatures) == {"predict_examples"}
  assert ner.predict(["北京"]) == [[]]
  assert (ner.max_seq_length, ner.doc_stride) == (8, 2)
  with ner:
    pass
  assert transport.closed

  text_client = client.NerClient(signature="predict_text", batch_size=4,
                                 transport=RecordingTransport())
  assert text_client.predict(["北京", "", "张 三"]) == [[], [], []]


class EchoTransport:
  """serving_default answers: each piece's label id is its input id mod 5,
  so a window answered in another window's place shows in the tags."""

  def __init__(self):
    self.widths = []

  def predict(self, signature_name, inputs):
    assert signature_name == "serving_default"
    ids = np.asarray(inputs["input_ids"])
    self.widths.append(ids.shape)
    return {"label_ids": (ids % 5).astype(np.int32),
            "scores": np.ones(ids.shape, np.float32)}

  def close(self):
    pass


def test_windows_grouped_by_length_come_back_in_request_order(tmp_path):
  vocab, labels = _assets(tmp_path)
  texts = ["张" * 12, "北", "京 三", "张三去北京" * 2, "去", "北京"]
  config = {"max_seq_length": 16, "doc_stride": 8, "do_lower_case": True}
  records = {}
  transports = {}
  for overhead in (None, 4):
    transports[overhead] = EchoTransport()
    ner = client.NerClient(
        vocab_file=vocab, labels_file=labels, ner_config=config,
        signature="serving_default", batch_size=4,
        transport=transports[overhead], request_overhead_pieces=overhead)
    records[overhead] = ner.predict_records(texts)
  # In order: [14, 3, 4, 12] and [3, 4] pieces, padded to 14 and 4.
  assert transports[None].widths == [(4, 14), (2, 4)]
  # Sorted: [3, 3, 4, 4] then [12, 14]: 4x4 + 2x14 + 2x4 = 52 < 72.
  assert transports[4].widths == [(4, 4), (2, 14)]
  assert records[4] == records[None]
  # Label id = piece id mod 5: "北" 8 -> 3 "I-LOC"; "京" 9 -> 4 "I-PER";
  # "三" 6 -> 1 "B-LOC".
  assert records[4][1]["tags"] == ["I-LOC"]
  assert records[4][2]["tags"] == ["I-PER", "B-LOC"]
  with pytest.raises(ValueError, match="request_overhead_pieces >= 0"):
    client.NerClient(vocab_file=vocab, labels_file=labels, ner_config=config,
                     transport=EchoTransport(), request_overhead_pieces=-1)


def test_predict_text_requests_fit_the_servers_character_bound():
  """The server admits max(rows x positions, max_text_chars) characters."""
  transport = RecordingTransport()
  text_client = client.NerClient(signature="predict_text", batch_size=32,
                                 transport=transport)
  records = text_client.predict_records(["张" * 3000] * 5 + ["北京"] * 3)
  assert [len(record["tags"]) for record in records] == [3000] * 5 + [2] * 3
  # 8192 characters per request at most: 2 + 2 + 1 long texts (+ 3 short).
  assert transport.batch_sizes == [2, 2, 4]


@pytest.mark.parametrize("texts,batch_size,max_characters,expected", [
    (["ab", "cde", "f"], 10, 5, [["ab", "cde"], ["f"]]),
    (["abcdef", "g"], 10, 5, [["abcdef"], ["g"]]),
    (list("abcde"), 2, 100, [["a", "b"], ["c", "d"], ["e"]]),
    ([], 3, 5, []),
])
def test_text_batches(texts, batch_size, max_characters, expected):
  assert request_codec.text_batches(texts, batch_size,
                                    max_characters) == expected


def test_doc_stride_defaults_to_half_the_window(tmp_path):
  vocab, labels = _assets(tmp_path)
  ner = client.NerClient(vocab_file=vocab, labels_file=labels,
                         ner_config={"max_seq_length": 9,
                                     "do_lower_case": False},
                         transport=RecordingTransport())
  assert (ner.max_seq_length, ner.doc_stride) == (9, 4)
  assert ner.label_names == LABELS


def test_client_settings_are_checked():
  with pytest.raises(ValueError, match="NerClient with signature "
                                       "predict_examples needs vocab_file, "
                                       "labels_file, max_seq_length, "
                                       "do_lower_case"):
    client.NerClient("localhost:1")
  with pytest.raises(ValueError, match="protocol='http'"):
    client.NerClient("localhost:1", protocol="http")
  with pytest.raises(ValueError, match="signature='classify'; use one of "
                                       "serving_default, predict_examples, "
                                       "predict_text"):
    client.NerClient("localhost:1", signature="classify")
  with pytest.raises(ValueError, match=r"got 0, 10.0, 3\."):
    client.NerClient("localhost:1", batch_size=0)
  with pytest.raises(ValueError, match="needs a target"):
    client.NerClient(signature="predict_text")


def test_read_export_assets_takes_the_latest_version(tmp_path):
  for version, max_seq_length in (("1", 8), ("3", 16)):
    extra = tmp_path / version / "assets.extra"
    extra.mkdir(parents=True)
    (tmp_path / version / "saved_model.pb").write_bytes(b"")
    (extra / "ner_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length}), encoding="utf-8")
  (tmp_path / "4").mkdir()  # no saved_model.pb: not a version
  vocab, labels, config = client.read_export_assets(str(tmp_path))
  assert vocab == str(tmp_path / "3" / "assets" / "vocab.txt")
  assert labels == str(tmp_path / "3" / "assets" / "labels.txt")
  assert config == {"max_seq_length": 16}


def test_cli_needs_texts(capsys):
  with pytest.raises(SystemExit):
    client.parse_args(["--server", "localhost:1"])
  assert "give --text (repeatable) or --input_file" in capsys.readouterr().err
  args = client.parse_args(["--server", "h:1", "--text", "a", "--text", "b",
                            "--protocol", "rest"])
  assert (args.text, args.protocol, args.signature) == (
      ["a", "b"], "rest", "predict_examples")


@pytest.mark.parametrize("module", ["serving.client.client",
                                    "serving.client.request_codec",
                                    "serving.client.transports",
                                    "serving.client.errors",
                                    "serving.server.saved_model_session",
                                    "trainer.export.export_versions"])
def test_client_modules_import_without_tensorflow(module):
  """Finding an export and predict_text over REST need no TensorFlow."""
  assert_imports_without_tensorflow(module)


@pytest.mark.parametrize("content, message", [
    (None, "--input_file=.*: No such file or directory"),
    (b"ok\n\xff\xfe bad\n", r"--input_file=.*:2: not valid UTF-8 at byte "
                              r"offset 3"),
])
def test_cli_bad_input_file_is_one_error_line(tmp_path, capsys, content,
                                              message):
  path = tmp_path / "texts.txt"
  if content is not None:
    path.write_bytes(content)
  status = client.main(["--server", "localhost:1", "--input_file",
                            str(path)])
  err = capsys.readouterr().err
  assert status == 1
  assert re.fullmatch(f"error: {message}.*\n", err), err
  assert "Traceback" not in err


def test_read_input_file_skips_blank_lines_and_crlf(tmp_path):
  path = tmp_path / "texts.txt"
  path.write_bytes("张三\r\n\r\n  \nJohn lives here\n".encode("utf-8"))
  assert client.read_input_file(str(path)) == ["张三", "John lives here"]
