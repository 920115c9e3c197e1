"""Distillation end to end: a tiny teacher, a shallower student, its export.

The teacher is a 2-layer tiny BERT fine-tuned a few steps on the pipeline
corpus; the student keeps one of its layers (--student_layers 1, initialised
from the teacher's checkpoint), learns from the teacher's distributions
(--teacher_dir) and from two tag-less sentences (--distill_unlabelled_file),
then predicts and exports. Served through `LocalModelServer`, the export
gives --do_predict's tags. Plus: the student's data (labels in the teacher's
order, the unlabelled windows appended to the training features) and the
error for a teacher with other labels.
"""

import json
import os

import pytest
import tensorflow as tf

from serving.client import client as client_lib
from serving.server import local_server
from tests import pipeline_fixtures
from tests.tiny_bert import bert_config_dict
from tests.tiny_bert import make_config
from tests.tiny_bert import save_random_bert
from tests.tiny_bert import write_text
from tests.tiny_bert import write_workspace
from trainer import schema
from trainer.distill import student_data
from trainer.errors import UserError
from trainer.features import input_pipeline
from trainer.run import train_lib
from trainer.run.run_inputs import RunInputs

UNLABELLED = "John went to New York .\nThe UN met in Paris .\n"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
  """A trained 2-layer teacher run; its workspace with "teacher_dir" added."""
  workspace = write_workspace(tmp_path_factory.mktemp("distill"))
  folder = workspace["tmp"]
  workspace["bert_config_file"] = write_text(
      folder / "bert_config_2.json",
      json.dumps(bert_config_dict(num_hidden_layers=2)))
  checkpoint = save_random_bert(str(folder / "ckpt" / "bert_model.ckpt"),
                                bert_config_dict(num_hidden_layers=2))
  workspace["unlabelled"] = write_text(folder / "unlabelled.txt", UNLABELLED)
  config = make_config(workspace, output_dir=str(folder / "teacher"),
                       init_checkpoint=checkpoint, freeze_bert=False,
                       num_train_steps=8, do_train=True)
  train_lib.run(config)
  workspace["teacher_dir"] = config.output_dir
  return workspace


def _student_config(workspace, name, **overrides):
  settings = dict(output_dir=str(workspace["tmp"] / name),
                  teacher_dir=workspace["teacher_dir"], freeze_bert=False,
                  init_checkpoint=tf.train.latest_checkpoint(
                      workspace["teacher_dir"]),
                  do_train=True, num_train_steps=4)
  settings.update(overrides)
  return make_config(workspace, **settings)


def _records(path):
  """The tf.train.Examples of a TFRecord, as {key: list of values}."""
  records = []
  for serialized in tf.data.TFRecordDataset(path).as_numpy_iterator():
    example = tf.train.Example.FromString(serialized)
    records.append({key: list(feature.int64_list.value)
                    for key, feature in example.features.feature.items()})
  return records


def _summary_tags(folder):
  """Tags of the scalar summaries in `folder`'s event files."""
  tags = set()
  for path in tf.io.gfile.glob(os.path.join(folder, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(value.tag for value in event.summary.value)
  return tags


def test_student_distils_predicts_and_serves_like_predict(teacher, caplog):
  config = _student_config(teacher, "student", student_layers="1",
                           distill_unlabelled_file=teacher["unlabelled"],
                           do_predict=True, do_export=True)
  caplog.set_level("INFO", logger="absl")
  summary = train_lib.run(config)
  log = caplog.text
  assert f"Distilling from {teacher['teacher_dir']} (checkpoint " in log
  assert "alpha 0.5, T 2)" in log
  assert f"+2 unlabelled sentences from {teacher['unlabelled']}" in log
  with open(os.path.join(config.output_dir,
                         schema.STUDENT_BERT_CONFIG_FILENAME)) as reader:
    assert json.load(reader)["num_hidden_layers"] == 1
  # The training batches held the teacher's targets: the KL term was logged.
  assert {"distill/gold_loss", "distill/kl"} <= _summary_tags(
      config.output_dir)
  pipeline_fixtures.assert_served_like_predict(summary)
  with open(summary["predict"]["jsonl"], encoding="utf-8") as reader:
    expected = [json.loads(line) for line in reader]
  texts = [record["text"] for record in expected]
  with local_server.LocalModelServer(
      "ner", os.path.dirname(summary["export"]), rest_api_port=None) as server:
    with client_lib.NerClient(
        f"127.0.0.1:{server.grpc_port}", "ner",
        export_dir=summary["export"], protocol="grpc",
        signature="predict_examples", timeout_s=20.0) as ner:
      served = ner.predict_records(texts)
  assert [r["tags"] for r in served] == [r["tags"] for r in expected]


def test_unlabelled_sentences_follow_the_training_windows(teacher):
  config = _student_config(teacher, "features",
                           distill_unlabelled_file=teacher["unlabelled"])
  config.validate()
  inputs = RunInputs(config).prepare()
  path, count = inputs.features_file("train")
  records = _records(path)
  assert len(records) == count
  indices = [r[schema.EXAMPLE_INDEX][0] for r in records]
  # Three labelled sentences (the third in several windows), then the two
  # unlabelled ones, one window each: indices 3 and 4, no label anywhere.
  assert sorted(set(indices)) == [0, 1, 2, 3, 4]
  assert indices[-2:] == [3, 4] and 3 not in indices[:-2]
  for record in records[-2:]:
    assert set(record[schema.LABEL_IDS]) == {schema.PAD_LABEL_ID}
    assert sum(record[schema.SCORE_MASK]) == 6  # every word scored
  for record in records[:-2]:
    assert set(record[schema.LABEL_IDS]) != {schema.PAD_LABEL_ID}
  # The unlabelled file's contents are part of the cache key.
  write_text(teacher["tmp"] / "unlabelled_2.txt", "Mary went to Paris .\n")
  other = _student_config(teacher, "features",
                          distill_unlabelled_file=str(
                              teacher["tmp"] / "unlabelled_2.txt"))
  other_path, other_count = RunInputs(other).prepare().features_file("train")
  assert other_path != path and other_count == count - 1
  plain = _student_config(teacher, "features")
  plain_path, plain_count = RunInputs(plain).prepare().features_file("train")
  assert plain_path not in (path, other_path) and plain_count == count - 2
  assert input_pipeline.read_feature_count(plain_path) == plain_count


def test_student_labels_follow_the_teacher_order(teacher):
  # Training data without ORG: the student still gets the teacher's list.
  write_text(teacher["tmp"] / "no_org.txt",
             pipeline_fixtures.JOHN_LIVES_IN_NEW_YORK)
  config = _student_config(teacher, "no_org",
                           train_file=str(teacher["tmp"] / "no_org.txt"))
  config.validate()
  with open(os.path.join(teacher["teacher_dir"],
                         schema.LABELS_FILENAME)) as reader:
    teacher_labels = reader.read().split()
  assert "B-ORG" in teacher_labels
  assert RunInputs(config).prepare().labels == teacher_labels


def test_teacher_with_other_labels_is_a_user_error(teacher):
  labels = write_text(teacher["tmp"] / "labels_reordered.txt",
                      "O\nI-LOC\nB-LOC\nB-ORG\nB-PER\nB-MISC\n")
  config = _student_config(teacher, "other_labels", labels_file=labels)
  with pytest.raises(UserError) as raised:
    train_lib.run(config)
  message = str(raised.value)
  assert f"--teacher_dir={teacher['teacher_dir']}" in message
  assert "--labels_file " + os.path.join(teacher["teacher_dir"],
                                         schema.LABELS_FILENAME) in message


def test_labels_in_teacher_order():
  teacher = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
  assert student_data.labels_in_teacher_order(
      ["O", "B-PER", "I-PER"], teacher) == teacher
  assert student_data.labels_in_teacher_order(
      ["O", "B-MISC"], teacher) == ["O", "B-MISC"]


def test_read_unlabelled_text_and_json_lines(tmp_path):
  text = write_text(tmp_path / "u.txt", "John lives in Paris.\n\nMary went.\n")
  sentences = student_data.read_unlabelled(text)
  assert [s.tokens for s in sentences] == [
      ("John", "lives", "in", "Paris", "."), ("Mary", "went", ".")]
  assert [s.tags for s in sentences] == [None, None]
  jsonl = write_text(tmp_path / "u.jsonl", '{"text": "北京 见"}\n')
  sentence, = student_data.read_unlabelled(jsonl)
  assert sentence.tokens == ("北", "京", "见") and sentence.tags is None
  # A labelled file is read, its tags dropped.
  conll = write_text(tmp_path / "u.conll",
                     pipeline_fixtures.MARY_WENT_TO_PARIS)
  sentence, = student_data.read_unlabelled(conll)
  assert sentence.tokens == ("Mary", "went", "to", "Paris", ".")
  assert sentence.tags is None
  with pytest.raises(UserError, match="--distill_unlabelled_file=.*missing"
                     ".txt: no such file"):
    student_data.read_unlabelled(str(tmp_path / "missing.txt"))
