"""Tests for run_ner.py: flag checks and the command-line error path."""

import json
import os
import subprocess
import sys

from absl import flags
import pytest

import run_ner
from trainer import train_lib

FLAGS = flags.FLAGS
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module", autouse=True)
def defined_flags():
  if "do_train" not in FLAGS:
    run_ner.define_flags()
  yield


def _parse(*args):
  FLAGS.unparse_flags()
  FLAGS(["run_ner.py", *args])


@pytest.fixture()
def bert_files(tmp_path):
  config = tmp_path / "bert_config.json"
  config.write_text(json.dumps({"max_position_embeddings": 64}))
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
  return str(config), str(vocab)


@pytest.mark.parametrize("args, message", [
    ((), "At least one of --do_train"),
    (("--do_train", "--max_seq_length=2"), "--max_seq_length=2 is too small"),
    (("--do_train", "--doc_stride=0"), r"--doc_stride=0 must be in \[1, "),
    (("--do_train", "--train_file=/no/such.txt"),
     "--train_file=/no/such.txt: no such file"),
    (("--do_train", "--data_dir=/no/such/dir"), "is not a directory"),
    (("--do_train", "--train_batch_size=0"), "--train_batch_size=0 must be"),
    (("--do_train", "--warmup_proportion=1.5"), "--warmup_proportion=1.5"),
    (("--do_train", "--init_checkpoint=/no/bert_model.ckpt"),
     r"/no/bert_model.ckpt.index is missing"),
])
def test_bad_flags_are_explained(args, message):
  _parse(*args)
  with pytest.raises(ValueError, match=message):
    run_ner.validate_flags_or_throw()


def test_max_seq_length_above_model_positions(bert_files):
  config, vocab = bert_files
  _parse("--do_train", "--bert_config_file=" + config, "--vocab_file=" + vocab,
         "--max_seq_length=128")
  with pytest.raises(ValueError, match="Cannot use sequence length 128 because "
                     "the BERT model was only trained up to sequence length 64"):
    run_ner.validate_flags_or_throw()


def test_bert_config_needs_vocab(bert_files):
  config, _ = bert_files
  _parse("--do_train", "--bert_config_file=" + config)
  with pytest.raises(ValueError, match="needs --vocab_file"):
    run_ner.validate_flags_or_throw()


def test_embedded_default_settings_apply_only_to_unset_flags():
  _parse("--do_train", "--learning_rate=0.01")
  config = run_ner.config_from_flags()
  assert config.learning_rate == 0.01
  assert config.num_train_epochs == \
      train_lib.EMBEDDED_DEFAULT_SETTINGS["num_train_epochs"]
  _parse("--do_train", "--data_dir=" + REPO_ROOT)
  assert run_ner.config_from_flags().learning_rate == 5e-5


def test_lower_case_mismatch_with_checkpoint_name(tmp_path, bert_files):
  config, vocab = bert_files
  ckpt_dir = tmp_path / "uncased_L-12_H-768_A-12"
  ckpt_dir.mkdir()
  (ckpt_dir / "bert_model.ckpt.index").write_text("")
  _parse("--do_train", "--bert_config_file=" + config, "--vocab_file=" + vocab,
         "--init_checkpoint=%s/bert_model.ckpt" % ckpt_dir,
         "--nodo_lower_case", "--max_seq_length=32", "--doc_stride=16",
         "--output_dir=" + str(tmp_path / "out"),
         "--train_file=" + os.path.join(REPO_ROOT, "tests", "testdata",
                                        "english.conll"))
  run_ner.validate_flags_or_throw()
  with pytest.raises(ValueError, match="uncased_L-12_H-768_A-12.*lower"):
    train_lib.run(run_ner.config_from_flags())


def test_command_line_bad_data_exits_nonzero_with_file_and_line(tmp_path):
  bad = tmp_path / "train.txt"
  bad.write_text("EU B-ORG\nrejects O\nGerman B-MISC\ncall X-MISC\n",
                 encoding="utf-8")
  result = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "run_ner.py"), "--do_train",
       "--train_file=%s" % bad, "--output_dir=%s" % (tmp_path / "out")],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert "error: %s:4" % bad in result.stderr
  assert "X-MISC" in result.stderr


def test_unlabelled_training_file_is_explained(tmp_path):
  raw = tmp_path / "train.txt"
  raw.write_text("EU rejects German call\n", encoding="utf-8")
  config = train_lib.NerConfig(train_file=str(raw), do_train=True,
                               output_dir=str(tmp_path / "out"))
  with pytest.raises(ValueError, match=r"train\.txt was read as 'text' "
                     r"\(unlabelled\).*--data_format"):
    train_lib.run(config)


def test_predict_without_a_trained_model_is_explained(tmp_path):
  data = tmp_path / "test.txt"
  data.write_text("EU B-ORG\nrejects O\n", encoding="utf-8")
  labels = tmp_path / "labels.txt"
  labels.write_text("O\nB-ORG\n", encoding="utf-8")
  config = train_lib.NerConfig(predict_file=str(data), labels_file=str(labels),
                               train_file=str(data), do_predict=True,
                               output_dir=str(tmp_path / "out"))
  with pytest.raises(ValueError, match="holds no checkpoint.*--do_train"):
    train_lib.run(config)
