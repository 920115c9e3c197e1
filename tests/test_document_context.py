"""Document context end to end: features files, training, --do_predict, client.

A tiny BERT is trained with --context_pieces 8 on CoNLL data with two
`-DOCSTART-` documents; the client, sending the predict file's sentences as
documents, must get exactly the trainer's predictions.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.pipeline_fixtures import DOCSTART
from tests.pipeline_fixtures import JOHN_LIVES_IN_NEW_YORK
from tests.pipeline_fixtures import MARY_WENT_TO_PARIS
from tests.pipeline_fixtures import THE_UN_MET
from tests.tiny_bert import write_model_files
from tests.tiny_bert import write_text
from trainer.features import windows as windows_lib
from trainer.features import input_pipeline
from trainer.data import labels as labels_lib
from trainer.data import readers
from trainer.run import run_inputs
from trainer import schema
from trainer.run import train_lib
from trainer.errors import UserError

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "john", "lives", "in",
         "paris", "mary", "new", "york", "city", "went", "to", "the", "un",
         "met", "."]
# Document 1 holds two sentences, document 2 one.
SMALL = ("-DOCSTART- -X- -X- O\n\nJohn B-PER\nlives O\n\nin O\nParis B-LOC\n\n"
         "-DOCSTART- -X- -X- O\n\nMary B-PER\n")
# Two documents; the long sentence needs two windows at max_seq_length 16.
TRAIN = "\n".join([
    DOCSTART, JOHN_LIVES_IN_NEW_YORK, MARY_WENT_TO_PARIS, DOCSTART, THE_UN_MET,
    "Mary B-PER\nlives O\nin O\nParis B-LOC\n. O\n"])


@pytest.fixture()
def model_files(tmp_path):
  return write_model_files(tmp_path, VOCAB)


def _config(tmp_path, model_files, train_text, **settings):
  data_dir = tmp_path / "data"
  data_dir.mkdir(exist_ok=True)
  for name in ("train.txt", "dev.txt", "test.txt"):
    write_text(data_dir / name, train_text)
  bert_config, vocab = model_files
  values = dict(output_dir=str(tmp_path / "out"), data_dir=str(data_dir),
                bert_config_file=bert_config, vocab_file=vocab,
                max_seq_length=10, doc_stride=3, do_train=True)
  values.update(settings)
  return train_lib.NerConfig(**values)


def _read_windows(path):
  """The feature file's windows as dicts of int lists (ints for scalars)."""
  windows = []
  for record in tf.data.TFRecordDataset(path):
    example = tf.train.Example.FromString(record.numpy())
    values = {key: list(feature.int64_list.value)
              for key, feature in example.features.feature.items()}
    windows.append({key: value[0] if key in schema.SCALAR_FEATURE_KEYS
                    else value for key, value in values.items()})
  return windows


def _dev_windows(config):
  inputs = run_inputs.RunInputs(config).prepare()
  return inputs, _read_windows(inputs.features_file("dev")[0])


# ids: [CLS] 2, [SEP] 3, john 5, lives 6, in 7, paris 8, mary 9.
# labels: O 0, B-LOC 1, B-PER 2.
def test_context_pieces_never_carry_a_label_or_a_prediction(tmp_path,
                                                            model_files):
  _, windows = _dev_windows(_config(tmp_path, model_files, SMALL,
                                    context_pieces=8))
  assert [(w["input_ids"], w["label_ids"], w["word_positions"],
           w["score_mask"]) for w in windows] == [
               # "John lives" + right context "in paris" (same document).
               ([2, 5, 6, 7, 8, 3], [-1, 2, 0, -1, -1, -1],
                [-1, 0, 1, -1, -1, -1], [0, 1, 1, 0, 0, 0]),
               # Left context "john lives" + "in Paris"; -DOCSTART- stops the
               # right context before "mary".
               ([2, 5, 6, 7, 8, 3], [-1, -1, -1, 0, 1, -1],
                [-1, -1, -1, 0, 1, -1], [0, 0, 0, 1, 1, 0]),
               ([2, 9, 3], [-1, 2, -1], [-1, 0, -1], [0, 1, 0])]


def test_file_scope_crosses_the_document_boundary(tmp_path, model_files):
  _, windows = _dev_windows(_config(tmp_path, model_files, SMALL,
                                    context_pieces=8, context_scope="file"))
  assert [w["input_ids"] for w in windows] == [
      [2, 5, 6, 7, 8, 9, 3], [2, 5, 6, 7, 8, 9, 3], [2, 5, 6, 7, 8, 9, 3]]
  assert [w["word_positions"] for w in windows] == [
      [-1, 0, 1, -1, -1, -1, -1], [-1, -1, -1, 0, 1, -1, -1],
      [-1, -1, -1, -1, -1, 0, -1]]


def test_no_context_keeps_the_cache_key_and_the_feature_bytes(tmp_path,
                                                              model_files):
  config = _config(tmp_path, model_files, TRAIN)
  inputs = run_inputs.RunInputs(config).prepare()
  path, count = inputs.features_file("dev")
  # The settings dict of the runs before document context existed.
  old_settings = {
      "max_seq_length": 10, "doc_stride": 3, "do_lower_case": True,
      "data_format": "auto", "overlapping_spans": "keep_longest",
      "strip_token_suffix_digit": False, "labels": inputs.labels}
  key = input_pipeline.cache_key([inputs.files["dev"], inputs.vocab_file],
                                 old_settings)
  assert path == input_pipeline.cache_path(inputs.cache_dir, "dev", key)
  # Sentence-at-a-time conversion, as before: the same bytes.
  label_ids = labels_lib.label_map(inputs.labels)
  legacy = [window for index, sentence in enumerate(inputs.sentences("dev"))
            for window in windows_lib.convert_sentence(
                sentence.tokens, [label_ids[t] for t in sentence.tags], index,
                inputs.tokenizer, 10, 3)]
  legacy_path = str(tmp_path / "legacy.tfrecord")
  assert input_pipeline.write_features(legacy, legacy_path) == count == 8
  with open(path, "rb") as got, open(legacy_path, "rb") as want:
    assert got.read() == want.read()


def test_context_settings_are_in_the_cache_key(tmp_path, model_files):
  paths = set()
  for settings in ({}, {"context_pieces": 8}, {"context_pieces": 16},
                   {"context_pieces": 8, "context_scope": "file"}):
    config = _config(tmp_path, model_files, TRAIN, **settings)
    paths.add(run_inputs.RunInputs(config).prepare().features_file("dev")[0])
  assert len(paths) == 4


@pytest.mark.parametrize("settings, message", [
    ({"context_pieces": -1}, r"^--context_pieces=-1 must be an integer >= 0"),
    ({"context_scope": "page"},
     r"^--context_scope='page' is not one of document, file\.$"),
])
def test_bad_context_flags_fail_before_any_work(tmp_path, model_files,
                                                settings, message):
  config = _config(tmp_path, model_files, TRAIN, **settings)
  with pytest.raises(UserError, match=message):
    train_lib.run(config)
  assert not os.path.exists(config.output_dir)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """Trains with context_pieces 8, evaluates, predicts and exports once."""
  tmp_path = tmp_path_factory.mktemp("context_model")
  config = _config(tmp_path, write_model_files(tmp_path, VOCAB), TRAIN,
                   max_seq_length=16,
                   context_pieces=8, do_eval=True, do_predict=True,
                   do_export=True, train_batch_size=2, eval_batch_size=2,
                   predict_batch_size=3, learning_rate=1e-2,
                   num_train_steps=6, save_checkpoints_steps=100, seed=1)
  summary = train_lib.run(config)
  with open(summary["predict"]["jsonl"], encoding="utf-8") as reader:
    records = [json.loads(line) for line in reader]
  sentences = readers.read_sentences(config.predict_file
                                     or os.path.join(config.data_dir,
                                                     "test.txt"))
  return {"config": config, "summary": summary, "records": records,
          "sentences": sentences}


def _documents(trained):
  """The predict file's record indices, one list per document."""
  documents = {}
  for index, sentence in enumerate(trained["sentences"]):
    documents.setdefault(sentence.document_id, []).append(index)
  return list(documents.values())


def _client(trained, **settings):
  from serving.client import client as client_lib  # pylint: disable=import-outside-toplevel
  from serving.client import transports  # pylint: disable=import-outside-toplevel
  export_dir = trained["summary"]["export"]
  return client_lib.NerClient(
      export_dir=export_dir,
      transport=transports.SavedModelTransport(export_dir), **settings)


def _assert_same_predictions(got, want):
  assert [r["tokens"] for r in got] == [r["tokens"] for r in want]
  assert [r["tags"] for r in got] == [r["tags"] for r in want]
  for served, predicted in zip(got, want):
    np.testing.assert_allclose(served["scores"], predicted["scores"],
                               atol=1e-5)


def test_do_predict_and_eval_tag_every_token_once(trained):
  summary, sentences = trained["summary"], trained["sentences"]
  assert [len(r["tags"]) for r in trained["records"]] == [6, 5, 19, 5]
  assert summary["predict"]["tokens"] == sum(len(s.tokens) for s in sentences)
  assert 0.0 <= summary["eval"]["entity_f1"] <= 1.0
  out = trained["config"].output_dir
  with open(os.path.join(out, schema.EVAL_PREDICTIONS_CONLL_FILENAME),
            encoding="utf-8") as reader:
    blocks = reader.read().strip().split("\n\n")
  assert [len(block.split("\n")) for block in blocks] == [6, 5, 19, 5]
  with open(os.path.join(summary["export"], schema.ASSETS_EXTRA_DIRNAME,
                         schema.NER_CONFIG_FILENAME), encoding="utf-8") as f:
    assert json.load(f)["context_pieces"] == 8


def test_client_as_document_equals_do_predict(trained):
  records = trained["records"]
  client = _client(trained)
  assert client.context_pieces == 8
  for document in _documents(trained):
    texts = [records[index]["text"] for index in document]
    _assert_same_predictions(client.predict_records(texts, as_document=True),
                             [records[index] for index in document])


def test_client_context_pairs_equal_do_predict(trained):
  records = trained["records"]
  texts, pairs = [], []
  for document in _documents(trained):
    document_texts = [records[index]["text"] for index in document]
    for position, text in enumerate(document_texts):
      texts.append(text)
      pairs.append((" ".join(document_texts[:position]),
                    " ".join(document_texts[position + 1:])))
  client = _client(trained)
  _assert_same_predictions(client.predict_records(texts, pairs), records)
  assert client.predict(texts, pairs) == [
      [{"type": e["type"], "text": e["text"], "start": e["char_start"],
        "end": e["char_end"], "score": e["score"]} for e in r["entities"]]
      for r in client.predict_records(texts, pairs)]


def test_without_context_the_client_sees_different_inputs(trained):
  # Context really reaches the model: sentence-at-a-time scores differ.
  records = trained["records"]
  alone = _client(trained).predict_records([r["text"] for r in records])
  assert [r["tokens"] for r in alone] == [r["tokens"] for r in records]
  assert any(not np.allclose(got["scores"], want["scores"], atol=1e-5)
             for got, want in zip(alone, records))


@pytest.mark.parametrize("settings, call, message", [
    ({"signature": "serving_default"}, {"as_document": True},
     r"^Document context needs signature=predict_examples: serving_default "
     r"cannot mark context pieces"),
    ({"ner_config": {"context_pieces": 0}}, {"as_document": True},
     r"^Document context asked for, but the model's ner_config has "
     r"context_pieces 0"),
    ({}, {"context": [("a", "b")], "as_document": True},
     r"^Give context pairs or as_document=True, not both\.$"),
    ({}, {"context": [("a", "b")]},
     r"^Got 1 context pairs for 2 texts; give one \(left_text, right_text\) "
     r"per text\.$"),
    ({}, {"context": [("a", "b"), ("c",)]},
     r"^Context 1 is \('c',\); give one \(left_text, right_text\) pair of "
     r"strings per text"),
])
def test_client_refuses_context_it_cannot_honour(trained, settings, call,
                                                 message):
  client = _client(trained, **settings)
  with pytest.raises(ValueError, match=message):
    client.predict_records(["John lives", "in Paris"], **call)
