"""trainer.run.manifest: later phases check what they read against training.

One tiny model is trained per module; each test works on a copy of its
output folder.
"""

import hashlib
import json
import logging
import os
import shutil
import types

import pytest
import tensorflow as tf

from tests.tiny_bert import make_config
from tests.tiny_bert import write_workspace
from trainer.errors import UserError
from trainer.export import exporter as export_lib
from trainer.run import manifest
from trainer.run import train_lib

TRAINED_LABELS = ["O", "B-LOC", "B-ORG", "B-PER", "I-LOC"]


def _sha256(path):
  with open(path, "rb") as reader:
    return hashlib.sha256(reader.read()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A workspace and an output folder trained 3 steps (do not modify)."""
  files = write_workspace(tmp_path_factory.mktemp("manifest"))
  train_lib.run(make_config(files, do_train=True))
  return files


@pytest.fixture()
def run(trained, tmp_path):  # pylint: disable=redefined-outer-name
  """A copy of the trained folder and its data; `config(**overrides)`."""
  data_dir = tmp_path / "data"
  shutil.copytree(trained["data_dir"], data_dir)
  shutil.copytree(trained["tmp"] / "out", tmp_path / "out")
  files = dict(trained, tmp=tmp_path, data_dir=str(data_dir))
  out = str(tmp_path / "out")
  return {"files": files, "out": out,
          "labels": os.path.join(out, "labels.txt"),
          "config": lambda **overrides: make_config(files, **overrides)}


def _labels(path):
  with open(path, encoding="utf-8") as reader:
    return reader.read().split()


def _write_labels(path, labels):
  with open(path, "w", encoding="utf-8") as writer:
    writer.write("".join(f"{label}\n" for label in labels))


def test_training_writes_the_manifest(trained):  # pylint: disable=redefined-outer-name
  out = str(trained["tmp"] / "out")
  with open(manifest.manifest_path(out), encoding="utf-8") as reader:
    written = json.load(reader)
  labels_file = os.path.join(out, "labels.txt")
  assert written["format"] == 1
  assert written["labels"] == TRAINED_LABELS == _labels(labels_file)
  assert written["files"] == {
      "labels": {"path": labels_file, "sha256": _sha256(labels_file)},
      "vocab": {"path": trained["vocab_file"],
                "sha256": _sha256(trained["vocab_file"])},
      "bert_config": {"path": trained["bert_config_file"],
                      "sha256": _sha256(trained["bert_config_file"])}}
  train = os.path.join(trained["data_dir"], "train.txt")
  assert written["train_data"] == [{"path": train, "sha256": _sha256(train)}]
  assert written["model_settings"] == {
      "do_lower_case": True, "head": "softmax", "lstm_units": 128,
      "lstm_layers": 1, "bert_layers": [-1], "layer_combination": "concat"}
  assert written["settings"]["seed"] == 1
  assert not [name for name in os.listdir(out) if ".tmp-" in name]


def test_swapped_labels_are_refused_before_export(run):  # pylint: disable=redefined-outer-name
  """Was: exported with exit 0, serving 张三 as LOC."""
  swapped = ["O", "B-PER", "B-ORG", "B-LOC", "I-LOC"]
  _write_labels(run["labels"], swapped)
  with pytest.raises(UserError) as refused:
    train_lib.run(run["config"](do_export=True))
  assert str(refused.value) == (
      f"{run['labels']} does not hold the labels the model in {run['out']} "
      "was trained with: it has the same 5 labels in another order (line 2 "
      "is B-PER, trained B-LOC; line 4 is B-LOC, trained B-PER). The "
      "trained list, one a line, is: O B-LOC B-ORG B-PER I-LOC (from "
      f"{run['out']}/run_manifest.json). Restore {run['labels']} to it, or "
      "train again in a new --output_dir.")
  assert not os.path.exists(os.path.join(run["out"], "export"))
  assert _labels(run["labels"]) == swapped  # left for the user to restore


def test_a_shortened_labels_file_is_refused_before_export(run):  # pylint: disable=redefined-outer-name
  """Was: exported; the server died at start-up (indices[0,5] = 6 ...)."""
  _write_labels(run["labels"], TRAINED_LABELS[:-1])
  with pytest.raises(UserError, match=(
      "does not hold the labels the model in .* was trained with: it has 4 "
      "labels where the model has 5 outputs, without I-LOC. The trained "
      "list")):
    train_lib.run(run["config"](do_export=True))
  assert not os.path.exists(os.path.join(run["out"], "export"))


def test_the_exporter_refuses_a_label_count_the_head_does_not_have(run):  # pylint: disable=redefined-outer-name
  """Without a manifest too: the count is checked against the checkpoint."""
  _write_labels(run["labels"], TRAINED_LABELS[:-1])
  checkpoint = tf.train.latest_checkpoint(run["out"])
  export_dir = os.path.join(run["out"], "direct_export")
  with pytest.raises(ValueError) as refused:
    export_lib.export_model(
        export_dir, checkpoint, run["files"]["bert_config_file"],
        run["files"]["vocab_file"], run["labels"],
        {"max_seq_length": 10, "do_lower_case": True})
  assert str(refused.value) == (
      f"{run['labels']} has 4 labels but the head of {checkpoint} has 5 "
      "outputs: this is not the label list the model was trained with. "
      "Restore the training run's labels.txt (one label per output, in "
      "training order); nothing was exported.")
  assert not os.path.exists(export_dir)
  assert export_lib.head_output_size(checkpoint) == 5


def test_the_export_carries_the_manifest(run):  # pylint: disable=redefined-outer-name
  summary = train_lib.run(run["config"](do_export=True))
  copied = os.path.join(summary["export"], "assets", "run_manifest.json")
  assert _sha256(copied) == _sha256(manifest.manifest_path(run["out"]))


def test_a_changed_vocab_or_bert_config_is_refused(run):  # pylint: disable=redefined-outer-name
  vocab = run["files"]["vocab_file"]
  changed_vocab = os.path.join(str(run["files"]["tmp"]), "vocab2.txt")
  with open(vocab, encoding="utf-8") as reader:
    pieces = reader.read().split("\n")
  pieces[5], pieces[6] = pieces[6], pieces[5]  # john <-> lives
  with open(changed_vocab, "w", encoding="utf-8") as writer:
    writer.write("\n".join(pieces))
  with pytest.raises(UserError) as refused:
    train_lib.run(run["config"](do_eval=True, vocab_file=changed_vocab))
  assert str(refused.value) == (
      f"{changed_vocab} is not the vocab file the model in {run['out']} was "
      f"trained with: its SHA-256 is {_sha256(changed_vocab)[:12]}..., the "
      f"trained one's {_sha256(vocab)[:12]}... ({vocab}, recorded in "
      f"{run['out']}/run_manifest.json). Pass --vocab_file the trained file, "
      "or train again in a new --output_dir.")
  config_file = os.path.join(str(run["files"]["tmp"]), "bert_config2.json")
  with open(run["files"]["bert_config_file"], encoding="utf-8") as reader:
    settings = json.load(reader)
  with open(config_file, "w", encoding="utf-8") as writer:
    json.dump(dict(settings, hidden_act="relu"), writer)
  with pytest.raises(UserError, match=(
      f"{config_file} is not the bert config file the model in .* Pass "
      "--bert_config_file the trained file")):
    train_lib.run(run["config"](do_predict=True,
                                bert_config_file=config_file))


def test_other_model_settings_are_refused(run):  # pylint: disable=redefined-outer-name
  with pytest.raises(UserError) as refused:
    train_lib.run(run["config"](do_eval=True, do_lower_case=False,
                                head="crf"))
  assert str(refused.value) == (
      "This run's model settings differ from those the model in "
      f"{run['out']} was trained with: --do_lower_case=False (trained with "
      "True), --head='crf' (trained with 'softmax') "
      f"({run['out']}/run_manifest.json). Pass the trained values, or train "
      "again in a new --output_dir.")


def test_another_labels_file_is_refused_naming_it(run):  # pylint: disable=redefined-outer-name
  other = os.path.join(str(run["files"]["tmp"]), "my_labels.txt")
  _write_labels(other, TRAINED_LABELS + ["I-PER"])
  with pytest.raises(UserError, match=(
      f"{other} does not hold the labels .* it has 6 labels where the model "
      "has 5 outputs, with I-PER, which the model never learned")):
    train_lib.run(run["config"](do_predict=True, labels_file=other))
  assert _labels(run["labels"]) == TRAINED_LABELS  # not overwritten


def test_resuming_on_other_training_data_is_refused(run):  # pylint: disable=redefined-outer-name
  train = os.path.join(run["files"]["data_dir"], "train.txt")  # a copy
  with open(train, encoding="utf-8") as reader:
    text = reader.read()
  with open(train, "a", encoding="utf-8") as writer:
    writer.write("\nParis B-LOC\n")
  with pytest.raises(UserError) as refused:
    train_lib.run(run["config"](do_train=True, num_train_steps=6))
  checkpoint = tf.train.latest_checkpoint(run["out"])
  assert checkpoint.endswith("model.ckpt-3")
  recorded = manifest.read(run["out"])["train_data"][0]["path"]
  assert recorded != train
  assert str(refused.value) == (
      f"{train} is not the training data the checkpoints in {run['out']} "
      f"were trained on (recorded: {recorded}; "
      f"{run['out']}/run_manifest.json): resuming would go on "
      "with other data. Restore the file, or train in a new --output_dir "
      f"(with --init_checkpoint={checkpoint} to start from this model).")
  # The trained data under another path is the trained data.
  with open(train, "w", encoding="utf-8") as writer:
    writer.write(text)
  assert train_lib.run(run["config"](do_train=True, num_train_steps=6))[
      "train_steps"] == 6


def test_resuming_with_other_optimizer_variables_is_refused(run):  # pylint: disable=redefined-outer-name
  # Sparse embedding updates add a slot the dense checkpoints do not hold.
  with pytest.raises(UserError) as refused:
    train_lib.run(run["config"](do_train=True, num_train_steps=6,
                                sparse_embedding_updates=True))
  checkpoint = tf.train.latest_checkpoint(run["out"])
  assert checkpoint.endswith("model.ckpt-3")
  assert str(refused.value) == (
      f"The checkpoints in {run['out']} were trained with "
      "--sparse_embedding_updates=False and this run has "
      "--sparse_embedding_updates=True "
      f"({run['out']}/run_manifest.json): their optimizer variables differ, "
      "so training cannot resume. Pass --sparse_embedding_updates=False, or "
      "train in a new --output_dir (with "
      f"--init_checkpoint={checkpoint} to start from this model).")
  # Predicting from it with the flag set is no resume: allowed.
  assert "predict" in train_lib.run(run["config"](
      do_predict=True, sparse_embedding_updates=True))


def test_a_changed_training_file_is_named_with_both_checksums(run):  # pylint: disable=redefined-outer-name
  train = os.path.join(run["files"]["data_dir"], "train.txt")
  recorded = dict(manifest.read(run["out"]),
                  train_data=[{"path": train, "sha256": "9" * 64}])
  inputs = types.SimpleNamespace(files={"train": train})
  with pytest.raises(UserError) as refused:
    manifest._check_train_data(inputs, recorded, run["out"])  # pylint: disable=protected-access
  assert str(refused.value).startswith(
      f"{train} changed since the checkpoints in {run['out']} were trained on "
      f"it (SHA-256 now {_sha256(train)[:12]}..., then 999999999999...; "
      f"{run['out']}/run_manifest.json): resuming would go on with other data.")


def test_resuming_on_the_same_files_keeps_the_manifest(run):  # pylint: disable=redefined-outer-name
  before = _sha256(manifest.manifest_path(run["out"]))
  summary = train_lib.run(run["config"](do_train=True, num_train_steps=5,
                                        do_eval=True))
  assert summary["train_steps"] == 5
  assert _sha256(manifest.manifest_path(run["out"])) == before


def test_a_folder_without_manifest_is_used_and_gets_one_on_resume(
    run, caplog):  # pylint: disable=redefined-outer-name
  os.remove(manifest.manifest_path(run["out"]))
  with caplog.at_level(logging.WARNING):
    train_lib.run(run["config"](do_eval=True))
  assert (f"{run['out']} has no run_manifest.json (trained by an older "
          "version): the files this run reads are not checked") in caplog.text
  assert not os.path.exists(manifest.manifest_path(run["out"]))
  train_lib.run(run["config"](do_train=True, num_train_steps=4))
  assert manifest.read(run["out"])["labels"] == TRAINED_LABELS


def test_an_unreadable_manifest_is_named(run):  # pylint: disable=redefined-outer-name
  with open(manifest.manifest_path(run["out"]), "w", encoding="utf-8") as out:
    out.write("{")
  with pytest.raises(UserError, match=(
      f"{run['out']}/run_manifest.json is not a readable run manifest "
      "\\(JSONDecodeError: .*\\); it records what the model in .* was "
      "trained with. Restore it, or train again in a new --output_dir.")):
    train_lib.run(run["config"](do_eval=True))


@pytest.mark.parametrize("found, trained, described", [
    (["O", "B-A", "B-B"], ["O", "B-B", "B-A"],
     "the same 3 labels in another order (line 2 is B-A, trained B-B; line 3 "
     "is B-B, trained B-A)"),
    (["O", "B-A"], ["O", "B-A", "I-A"],
     "2 labels where the model has 3 outputs, without I-A"),
    (["O", "B-X", "B-A"], ["O", "B-A"],
     "3 labels where the model has 2 outputs, with B-X, which the model "
     "never learned"),
    (["O", "B-X"], ["O", "B-A"],
     "2 labels where the model has 2 outputs, without B-A, with B-X, which "
     "the model never learned"),
])
def test_describe_label_change(found, trained, described):
  assert manifest.describe_label_change(found, trained) == described
