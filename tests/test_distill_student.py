"""A --student_layers student: its config, its restore and its run folder.

The source is a random 3-layer tiny BERT; the student keeps layers 0 and 2
(or, with a count, layers spread evenly). What is restored is read back
from checkpoints and compared exactly.
"""

import json
import logging
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tests.tiny_bert import bert_config_dict
from tests.tiny_bert import make_config
from tests.tiny_bert import save_random_bert
from tests.tiny_bert import workspace  # noqa: F401  pylint: disable=unused-import
from trainer import schema
from trainer.errors import UserError
from trainer.run import config as config_lib
from trainer.run import manifest
from trainer.run import run_inputs
from trainer.run import train_lib
from trainer.tf_compat import modeling
from trainer.training import estimator_lib
from trainer.training import model_fn as model_fn_lib

tf1 = tf.compat.v1

SOURCE_LAYERS = 3


@pytest.fixture()
def source(workspace):  # pylint: disable=redefined-outer-name
  """The workspace with a 3-layer source model: "bert_config_file" is its
  config (no dropout), "checkpoint" its random weights."""
  settings = bert_config_dict(num_hidden_layers=SOURCE_LAYERS,
                              hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0)
  path = workspace["tmp"] / "bert_config_3.json"
  path.write_text(json.dumps(settings), encoding="utf-8")
  workspace["bert_config_file"] = str(path)
  workspace["checkpoint"] = save_random_bert(
      str(workspace["tmp"] / "ckpt" / "bert_model.ckpt"), settings)
  return workspace


def _student_config(source, **overrides):  # pylint: disable=redefined-outer-name
  settings = dict(init_checkpoint=source["checkpoint"], freeze_bert=False,
                  student_layers="0,2")
  settings.update(overrides)
  return make_config(source, **settings)


def _assert_student_is_source_layers(student, checkpoint, layers):
  """`student` ({name: value}) holds `layers` of `checkpoint`, exactly."""
  source = tf.train.load_checkpoint(checkpoint)
  student = {name: value for name, value in student.items()
             if name.startswith("bert/")
             and not name.endswith(("/adam_m", "/adam_v"))}  # Adam's slots
  assert len(student) == 16 * len(layers) + 7  # embeddings and pooler: 7
  encoder = [name for name in student if name.startswith("bert/encoder/")]
  assert sorted({name.split("/")[2] for name in encoder}) == [
      f"layer_{index}" for index in range(len(layers))]
  assert len(encoder) == 16 * len(layers)
  for name, value in student.items():
    match = re.match(r"bert/encoder/layer_(\d+)/(.*)", name)
    if match:
      name = f"bert/encoder/layer_{layers[int(match.group(1))]}/" + (
          match.group(2))
    np.testing.assert_array_equal(value, source.get_tensor(name), name)


def _build_student_and_head(source, layers):  # pylint: disable=redefined-outer-name
  settings = bert_config_dict(num_hidden_layers=len(layers))
  ids = tf1.placeholder(tf.int32, [None, None])
  modeling.BertModel(modeling.BertConfig.from_dict(settings), False, ids)
  tf1.get_variable("ner_head/output_bias", [5])


def _values_after_init():
  with tf1.Session() as session:
    session.run(tf1.global_variables_initializer())
    return {variable.op.name: session.run(variable)
            for variable in tf1.global_variables()}


@pytest.mark.parametrize("use_scaffold", [False, True])
def test_student_layers_start_from_the_chosen_checkpoint_layers(
    source, caplog, use_scaffold):  # pylint: disable=redefined-outer-name
  with tf.Graph().as_default(), caplog.at_level(logging.INFO):
    _build_student_and_head(source, [0, 2])
    trainable, scaffold_fn = model_fn_lib.restore_and_select_trainable(
        source["checkpoint"], freeze_bert=True, use_scaffold=use_scaffold,
        student_layers=[0, 2])
    if scaffold_fn:
      scaffold_fn()
    values = _values_after_init()
  assert [variable.op.name for variable in trainable] == [
      "ner_head/output_bias"]
  _assert_student_is_source_layers(values, source["checkpoint"], [0, 2])
  assert "Student layer 0 <- checkpoint layer 0" in caplog.text
  assert "Student layer 1 <- checkpoint layer 2" in caplog.text
  assert ("name = bert/encoder/layer_1/output/dense/kernel:0, shape = (37, "
          "32), *INIT_FROM_CKPT*, *FROZEN*") in caplog.text


def test_without_student_layers_same_names_are_restored(source):  # pylint: disable=redefined-outer-name
  with tf.Graph().as_default():
    _build_student_and_head(source, [0, 2])
    model_fn_lib.restore_and_select_trainable(source["checkpoint"],
                                              freeze_bert=False)
    values = _values_after_init()
  _assert_student_is_source_layers(values, source["checkpoint"], [0, 1])


def test_estimator_student_layers_come_from_the_source_config(source):  # pylint: disable=redefined-outer-name
  assert estimator_lib.student_layers(_student_config(source)) == [0, 2]
  assert estimator_lib.student_layers(
      _student_config(source, student_layers="2")) == [0, 1]
  assert estimator_lib.student_layers(_student_config(
      source, student_layers="2", student_layer_choice="even")) == [1, 2]
  assert estimator_lib.student_layers(
      _student_config(source, student_layers=None)) is None
  # A from-scratch student starts at random: nothing to restore.
  assert estimator_lib.student_layers(
      _student_config(source, init_checkpoint=None)) is None


def _read_json(path):
  with open(path, encoding="utf-8") as reader:
    return json.load(reader)


def _checkpoint_values(path):
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name, _ in tf.train.list_variables(path)}


def test_a_student_run_trains_exports_and_refuses_other_layers(
    source, caplog):  # pylint: disable=redefined-outer-name
  config = _student_config(source, do_train=True, do_export=True,
                           num_train_steps=1)
  out = config.output_dir
  student_file = os.path.join(out, schema.STUDENT_BERT_CONFIG_FILENAME)
  with caplog.at_level(logging.INFO):
    summary = train_lib.run(config)
  assert (f"Student: 2 of 3 layers (0, 2) from {source['bert_config_file']}"
          in caplog.text)

  # The student's config: the source's with 2 layers.
  assert _read_json(student_file) == dict(
      _read_json(source["bert_config_file"]), num_hidden_layers=2)
  # Step 0 (the checkpoint the Estimator writes before the first update)
  # holds the chosen source layers, exactly.
  _assert_student_is_source_layers(
      _checkpoint_values(os.path.join(out, "model.ckpt-0")),
      source["checkpoint"], [0, 2])
  assert tf.train.latest_checkpoint(out).endswith("model.ckpt-1")

  # The manifest checks the student's config; the export records it.
  written = manifest.read(out)
  assert written["files"]["bert_config"]["path"] == student_file
  assert written["student"]["layers"] == [0, 2]
  assert written["student"]["source_layers"] == 3
  assert written["student"]["source_bert_config"]["path"] == (
      source["bert_config_file"])
  assert written["settings"]["student_layers"] == "0,2"
  ner_config = _read_json(os.path.join(summary["export"], "assets.extra",
                                       "ner_config.json"))
  assert ner_config["student"] == {"layers": [0, 2], "source_layers": 3}

  # Later phases with the same student: fine (export version 2).
  again = train_lib.run(_student_config(source, do_export=True))
  assert again["export"] == os.path.join(out, "export", "2")

  # Another --student_layers, or none, is refused before anything is
  # written.
  with pytest.raises(UserError) as refused:
    train_lib.run(_student_config(source, do_export=True,
                                  student_layers="1"))
  assert str(refused.value) == (
      f"The model in {out} is a student trained with --student_layers=0,2 "
      f"({out}/run_manifest.json), but this run has --student_layers=1: it "
      "would build another model. Pass --student_layers=0,2, or train again "
      "in a new --output_dir.")
  with pytest.raises(UserError, match=(
      r"is a student trained with --student_layers=0,2 \(.*\), but this run "
      "has none: it would build another model.")):
    train_lib.run(_student_config(source, do_export=True,
                                  student_layers=None))
  assert _read_json(student_file)["num_hidden_layers"] == 2

  # Without the manifest (a folder from before manifests), the student's
  # own config is what is checked.
  os.remove(manifest.manifest_path(out))
  with pytest.raises(UserError) as refused:
    train_lib.run(_student_config(source, do_train=True, num_train_steps=2,
                                  student_layers="1"))
  assert str(refused.value) == (
      f"{student_file} is the student config the checkpoints in {out} were "
      f"trained with, but --student_layers=1 of {source['bert_config_file']} "
      "gives another (num_hidden_layers 2 -> 1). Pass the trained "
      "--student_layers and --bert_config_file, or train again in a new "
      "--output_dir.")
  assert _read_json(student_file)["num_hidden_layers"] == 2
  os.remove(student_file)
  with pytest.raises(UserError) as refused:
    train_lib.run(_student_config(source, do_export=True))
  assert str(refused.value) == (
      f"The checkpoints in {out} were trained without --student_layers "
      f"(there is no {student_file}), but this run has --student_layers=0,2. "
      "Drop it, or train the student in a new --output_dir.")


def test_a_folder_trained_without_a_student_refuses_one(source):  # pylint: disable=redefined-outer-name
  config = _student_config(source, do_eval=True)
  os.makedirs(config.output_dir)
  path = manifest.manifest_path(config.output_dir)
  record = {"labels": [], "files": {}, "train_data": [],
            "model_settings": {}, "settings": {"student_layers": None}}
  with open(path, "w", encoding="utf-8") as writer:
    json.dump(record, writer)
  with pytest.raises(UserError) as refused:
    manifest.check_student_layers(config)
  assert str(refused.value) == (
      f"The model in {config.output_dir} was trained without "
      f"--student_layers ({path}), but this run has --student_layers=0,2. "
      "Drop it, or train the student in a new --output_dir.")
  config.student_layers = None
  manifest.check_student_layers(config)  # the same: fine
  # A manifest from before the flag existed is accepted.
  del record["settings"]["student_layers"]
  with open(path, "w", encoding="utf-8") as writer:
    json.dump(record, writer)
  config.student_layers = "0, 2"
  manifest.check_student_layers(config)
  record["settings"]["student_layers"] = "0,2"
  with open(path, "w", encoding="utf-8") as writer:
    json.dump(record, writer)
  manifest.check_student_layers(config)  # spaces do not count


def test_bert_layers_are_checked_against_the_students_layers(source):  # pylint: disable=redefined-outer-name
  _student_config(source, do_train=True, student_layers="2",
                  bert_layers=[-1]).validate()
  _student_config(source, do_train=True, student_layers="2",
                  bert_layers=[0, 1]).validate()
  path = source["bert_config_file"]
  with pytest.raises(UserError) as refused:
    _student_config(source, do_train=True, student_layers="2",
                    bert_layers=[2]).validate()
  assert str(refused.value) == (
      "--bert_layers=2: the encoder has 2 layers, so indices are 0..1 or "
      "-2..-1 (negative counts from the top). (a 2-layer student of "
      f"--bert_config_file={path})")
  with pytest.raises(UserError, match=r"--bert_layers=-3,-1: the encoder has "
                     r"2 layers"):
    _student_config(source, do_train=True, student_layers="0,2",
                    bert_layers=[-3, -1]).validate()
  with pytest.raises(UserError) as refused:
    _student_config(source, do_train=True, student_layers="4").validate()
  assert str(refused.value) == (
      "--student_layers=4 asks for 4 layers, but the source model has 3 "
      f"(--bert_config_file={path}); pass a count from 1 to 3.")


def test_frozen_defaults_keep_the_layers_a_student_has(source):  # pylint: disable=redefined-outer-name
  config = _student_config(source, freeze_bert=True, student_layers="2")
  applied = config_lib.apply_frozen_defaults(config, lambda name: False)
  assert applied["bert_layers"] == [-2, -1]
  config = _student_config(source, freeze_bert=True, student_layers=None)
  applied = config_lib.apply_frozen_defaults(config, lambda name: False)
  assert applied["bert_layers"] == [-3, -2, -1]


def test_a_from_scratch_student_is_built_from_the_tiny_config(
    source, caplog):  # pylint: disable=redefined-outer-name
  config = config_lib.NerConfig(
      output_dir=str(source["tmp"] / "scratch"), data_dir=source["data_dir"],
      student_layers="1", freeze_bert=False, do_train=True,
      max_seq_length=10, doc_stride=3)
  config.validate()
  with caplog.at_level(logging.INFO):
    inputs = run_inputs.RunInputs(config).prepare()
  source_file = os.path.join(config.output_dir, schema.BERT_CONFIG_FILENAME)
  student_file = os.path.join(config.output_dir,
                              schema.STUDENT_BERT_CONFIG_FILENAME)
  assert inputs.source_bert_config_file == source_file
  assert inputs.bert_config_file == student_file
  assert (inputs.student_layers, inputs.source_layers) == ([0], 2)
  assert _read_json(source_file)["num_hidden_layers"] == 2
  assert _read_json(student_file) == dict(_read_json(source_file),
                                          num_hidden_layers=1)
  assert f"Student: 1 of 2 layers (0) from {source_file}" in caplog.text
  assert manifest.read(config.output_dir)["files"]["bert_config"] == {
      "path": student_file,
      "sha256": manifest.cache_files.file_sha256(student_file)}
  # Preparing again (no checkpoints yet) with another count rewrites it.
  config.student_layers = "2"
  inputs = run_inputs.RunInputs(config).prepare()
  assert _read_json(student_file)["num_hidden_layers"] == 2
  assert not [name for name in os.listdir(config.output_dir)
              if ".tmp-" in name]
