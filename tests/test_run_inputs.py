"""RunInputs: a run's files, labels and features; writes only in prepare()."""

import json
import os

import pytest

from trainer.run import config as config_lib
from trainer.run import run_inputs
from trainer.run.config import NerConfig
from trainer.errors import UserError
from trainer.data.sample_data import sample_data_dir

TRAIN = "John B-PER\nlives O\nin O\nParis B-LOC\n\nMary B-PER\nleft O\n"
DEV = "Mary B-PER\nwent O\nto O\nParis B-LOC\n"


@pytest.fixture()
def data_dir(tmp_path):
  folder = tmp_path / "data"
  folder.mkdir()
  (folder / "train.txt").write_text(TRAIN, encoding="utf-8")
  (folder / "dev.txt").write_text(DEV, encoding="utf-8")
  return str(folder)


def _config(tmp_path, data_dir, **settings):
  return NerConfig(output_dir=str(tmp_path / "out"), data_dir=data_dir,
                   max_seq_length=8, doc_stride=2, do_train=True, **settings)


def test_resolve_data_files(tmp_path, data_dir):
  config = _config(tmp_path, data_dir)
  assert run_inputs.resolve_data_files(config) == {
      "train": os.path.join(data_dir, "train.txt"),
      "dev": os.path.join(data_dir, "dev.txt"), "test": None}
  config.predict_file = "/x/raw.txt"
  assert run_inputs.resolve_data_files(config)["test"] == "/x/raw.txt"
  embedded = run_inputs.resolve_data_files(NerConfig())
  assert embedded["train"] == os.path.join(sample_data_dir(), "train.txt")


def test_each_split_flag_overrides_its_split(tmp_path, data_dir):
  config = _config(tmp_path, data_dir, train_file="/x/t.txt",
                   eval_file="/x/d.txt", predict_file="/x/p.txt")
  assert run_inputs.resolve_data_files(config) == {
      "train": "/x/t.txt", "dev": "/x/d.txt", "test": "/x/p.txt"}
  assert not hasattr(run_inputs, "SPLIT_FLAGS")  # data_files owns the table


def test_build_vocab(tmp_path):
  sentences = [config_lib.readers.Sentence(tokens=["Paris", "!", "北京"],
                                           tags=None, source="x:1")]
  path = tmp_path / "vocab.txt"
  assert run_inputs.build_vocab(sentences, True, str(path)) == 9
  assert path.read_text(encoding="utf-8").split("\n") == [
      "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "paris", "!", "北", "京",
      ""]


def test_constructor_writes_nothing_prepare_writes_the_run_files(
    tmp_path, data_dir):
  config = _config(tmp_path, data_dir)
  inputs = run_inputs.RunInputs(config)
  assert not os.path.exists(config.output_dir)
  assert inputs.labels is None and inputs.tokenizer is None
  assert inputs.prepare() is inputs
  out = config.output_dir
  assert sorted(os.listdir(out)) == ["bert_config.json", "cache",
                                     "labels.txt", "run_manifest.json",
                                     "vocab.txt"]
  assert inputs.labels == ["O", "B-LOC", "B-PER"]
  with open(os.path.join(out, "labels.txt"), encoding="utf-8") as reader:
    assert reader.read() == "O\nB-LOC\nB-PER\n"
  with open(os.path.join(out, "bert_config.json"), encoding="utf-8") as reader:
    assert json.load(reader) == dict(config_lib.TINY_BERT_CONFIG,
                                     vocab_size=5 + 6)
  assert inputs.tokenizer.tokenize_word("Paris") == ["paris"]


def test_features_file_is_built_once_and_reused(tmp_path, data_dir):
  inputs = run_inputs.RunInputs(_config(tmp_path, data_dir)).prepare()
  path, count = inputs.features_file("dev")
  assert count == 1
  assert os.path.dirname(path) == inputs.cache_dir
  assert inputs.features_file("dev") == (path, count)
  # A new run (same settings, same data) reuses the cached file.
  again = run_inputs.RunInputs(_config(tmp_path, data_dir)).prepare()
  assert again.features_file("dev") == (path, 1)


def test_missing_split(tmp_path, data_dir):
  inputs = run_inputs.RunInputs(_config(tmp_path, data_dir)).prepare()
  with pytest.raises(UserError, match=r"^No test file in '.*': it holds "
                     r".*train\.txt.*Recognised names: test\.txt.*or pass "
                     r"--predict_file\.$"):
    inputs.features_file("test")


def test_unlabelled_training_file_is_explained(tmp_path):
  raw = tmp_path / "train.txt"
  raw.write_text("EU rejects German call\n", encoding="utf-8")
  config = NerConfig(train_file=str(raw), do_train=True,
                     output_dir=str(tmp_path / "out"))
  with pytest.raises(UserError, match=r"train\.txt was read as 'text' "
                     r"\(unlabelled\).*--data_format"):
    run_inputs.RunInputs(config).prepare()


def test_labels_of_an_earlier_run_must_match(tmp_path, data_dir):
  config = _config(tmp_path, data_dir)
  run_inputs.RunInputs(config).prepare()
  # A checkpoint exists: the earlier labels are the model's output layer.
  with open(os.path.join(config.output_dir, "checkpoint"), "w",
            encoding="utf-8") as writer:
    writer.write('model_checkpoint_path: "model.ckpt-1"\n')
  with open(os.path.join(config.output_dir, "model.ckpt-1.index"), "w",
            encoding="utf-8"):
    pass
  with open(os.path.join(data_dir, "train.txt"), "a", encoding="utf-8") as f:
    f.write("\nUN B-ORG\n")
  with pytest.raises(UserError, match=r"labels\.txt holds labels \['O', "
                     r"'B-LOC', 'B-PER'\] from an earlier run, but this data "
                     r"gives \['O', 'B-LOC', 'B-ORG', 'B-PER'\]"):
    run_inputs.RunInputs(config).prepare()


def test_no_label_list_without_training(tmp_path, data_dir):
  config = _config(tmp_path, data_dir)
  config.do_train, config.do_eval = False, True
  with pytest.raises(UserError, match=r"^No label list: .*labels\.txt does "
                     "not exist. Run with --do_train first, or pass "
                     "--labels_file.$"):
    run_inputs.RunInputs(config).prepare()


def test_output_dir_that_is_a_file(tmp_path):
  path = tmp_path / "out"
  path.write_text("")
  with pytest.raises(UserError, match=f"^--output_dir={path} is a file"):
    run_inputs.prepare_output_dir(str(path))
  with pytest.raises(UserError, match=f"^Cannot create --output_dir={path}/x: "
                     f"{path} is not a directory"):
    run_inputs.prepare_output_dir(str(path / "x"))
