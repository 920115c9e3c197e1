"""Run-level faults in real corpora (issue 13, items 1-6), end to end.

The readers' own tests cover each layout; these check what a whole run does
with them: what it logs, which files it writes, and that bad data anywhere
the run reads is refused before the first training step.
"""

import json
import logging
import os

import pytest
import tensorflow as tf

from tests.pipeline_fixtures import DEV
from tests.tiny_bert import make_config
from tests.tiny_bert import write_text
from trainer import schema
from trainer.run import train_lib
from trainer.errors import UserError

NESTED = [
    {"text": "浙商银行企业信贷部", "label": {
        "book": {"浙商银行企业": [[0, 5]]}, "company": {"浙商银行": [[0, 3]]}}},
    {"text": "叶老桂博士", "label": {"name": {"叶老桂": [[0, 2]]}}},
]


def _jsonl(path, records):
  return write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                              for r in records))


def test_nested_spans_train_and_every_dropped_span_is_listed(workspace):
  train = _jsonl(workspace["tmp"] / "train.json", NESTED)
  config = make_config(workspace, data_dir=None, train_file=train,
                   do_train=True, num_train_steps=1)
  train_lib.run(config)
  path = os.path.join(config.output_dir, schema.DATA_WARNINGS_FILENAME)
  with open(path, encoding="utf-8") as reader:
    lines = reader.read().splitlines()
  assert len(lines) == 1
  assert lines[0].startswith(f"{train}:1: overlapping_span: ")
  assert "company" in lines[0] and "浙商银行" in lines[0]
  with open(os.path.join(config.output_dir, "labels.txt"),
            encoding="utf-8") as reader:
    # The outer book span was kept, the inner company span dropped.
    assert reader.read().split() == ["O", "B-book", "B-name", "I-book",
                                     "I-name"]


def test_overlapping_spans_error_stops_before_training(workspace):
  train = _jsonl(workspace["tmp"] / "train.json", NESTED)
  config = make_config(workspace, data_dir=None, train_file=train,
                   do_train=True, overlapping_spans="error")
  with pytest.raises(ValueError, match=f"{train}:1"):
    train_lib.run(config)
  assert tf.train.latest_checkpoint(config.output_dir) is None


def test_unknown_overlapping_spans_value_is_a_config_error(workspace):
  config = make_config(workspace, do_train=True, overlapping_spans="merge")
  with pytest.raises(UserError, match="--overlapping_spans='merge'"):
    config.validate()


def test_unlabelled_predict_file_is_text_without_metrics(workspace, caplog):
  config = make_config(workspace, do_train=True, do_predict=True,
                   num_train_steps=1)
  train_lib.run(config)
  results = os.path.join(config.output_dir, schema.PREDICT_RESULTS_FILENAME)
  assert os.path.exists(results)  # the labelled test.txt was scored

  unlabelled = _jsonl(workspace["tmp"] / "test.json",
                      [{"text": "John lives in Paris"}, {"text": "UN met"}])
  config = make_config(workspace, do_predict=True, predict_file=unlabelled,
                   data_format="jsonl")
  with caplog.at_level(logging.INFO):
    summary = train_lib.run(config)
  assert summary["predict"]["sentences"] == 2
  assert "metrics" not in summary["predict"]
  assert not os.path.exists(results)  # no stale F1 left behind
  assert "has no labels (text to predict)" in caplog.text
  assert "predict F1" not in train_lib.format_summary(config, summary)


def test_bad_dev_tag_is_reported_before_the_first_step(workspace):
  write_text(workspace["tmp"] / "data" / "dev.txt",
         "John B-PER\nlives X-MISC\nin O\nParis B-LOC\n")
  config = make_config(workspace, do_train=True, do_eval=True)
  dev = os.path.join(workspace["data_dir"], "dev.txt")
  with pytest.raises(ValueError, match=f"{dev}:2.*X-MISC"):
    train_lib.run(config)
  assert tf.train.latest_checkpoint(config.output_dir) is None
  assert not os.path.exists(os.path.join(config.output_dir, "graph.pbtxt"))


def test_dev_tag_unknown_to_training_is_reported_before_training(workspace):
  write_text(workspace["tmp"] / "data" / "dev.txt",
         DEV.replace("Paris B-LOC", "Paris B-GPE"))
  config = make_config(workspace, do_train=True, do_eval=True)
  with pytest.raises(ValueError, match="B-GPE"):
    train_lib.run(config)
  assert tf.train.latest_checkpoint(config.output_dir) is None


def test_missing_split_lists_the_folder(workspace):
  os.remove(os.path.join(workspace["data_dir"], "dev.txt"))
  config = make_config(workspace, do_train=True, do_eval=True)
  with pytest.raises(UserError) as error:
    train_lib.run(config)
  assert "train.txt" in str(error.value) and "test.txt" in str(error.value)


@pytest.mark.slow  # end to end, tens of seconds
def test_rerun_on_new_data_warns_about_unknown_tokens(tmp_path, caplog):
  """A from-scratch vocab built by the first run is reused by the second."""
  data = tmp_path / "data"
  data.mkdir()
  for name in ("train.txt", "dev.txt"):
    write_text(data / name, "张 B-PER\n三 I-PER\n在 O\n\n")
  settings = dict(data_dir=str(data), output_dir=str(tmp_path / "out"),
                  do_train=True, num_train_steps=1, max_seq_length=16,
                  doc_stride=4, train_batch_size=2, eval_batch_size=2)
  train_lib.run(train_lib.NerConfig(**settings))
  # New data on a trained folder is refused (run manifest); without its
  # checkpoints the folder trains afresh, reusing its vocab.
  for name in os.listdir(tmp_path / "out"):
    if name.startswith(("model.ckpt", "checkpoint")):
      os.remove(tmp_path / "out" / name)
  write_text(data / "train.txt", "李 B-PER\n四 I-PER\n在 O\n\n张 B-PER\n\n")
  with caplog.at_level(logging.WARNING):
    train_lib.run(train_lib.NerConfig(**dict(settings, num_train_steps=2)))
  warnings = [r.getMessage() for r in caplog.records
              if "map to [UNK]" in r.getMessage()]
  assert len(warnings) == 1
  assert warnings[0].startswith("2 of 4 training tokens map to [UNK]")
  assert f"{data / 'train.txt'}:1 ('李')" in warnings[0]
