"""trainer.distill.teacher: a trained tiny run as the teacher, its targets file
(one record per training window, in order, with the teacher's log-probabilities
at the distillation positions), its reuse and rebuild, and its errors.
"""

import glob
import json
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.tiny_bert import make_config
from tests.tiny_bert import write_workspace
from trainer.distill import teacher as teacher_lib
from trainer.errors import UserError
from trainer.features import cache_files
from trainer.features import input_pipeline
from trainer.model import heads
from trainer import schema
from trainer.run import train_lib
from trainer.tf_compat import modeling
from trainer.tf_compat import tokenization
from trainer.training import estimator_lib

tf1 = tf.compat.v1
KINDS = ("softmax", "crf")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """{kind: (workspace, config, training feature file)}: two tiny teachers.

  Trained once per module (3 steps each); tests read the folders, and write
  only under their own tmp_path.
  """
  runs = {}
  for kind in KINDS:
    workspace = write_workspace(tmp_path_factory.mktemp(f"teacher_{kind}"))
    config = make_config(workspace, do_train=True, head=kind)
    train_lib.run(config)
    features, = glob.glob(os.path.join(config.output_dir, schema.CACHE_DIRNAME,
                                       "train-*.tfrecord"))
    runs[kind] = (workspace, config, features)
  return runs


def _records(path):
  return [tf.train.Example.FromString(record)
          for record in tf1.io.tf_record_iterator(path)]


def _ints(example, key):
  return list(example.features.feature[key].int64_list.value)


def _stored(example, num_labels):
  """float32 [n, L] of a targets record."""
  data, = example.features.feature[schema.TEACHER_LOG_PROBS].bytes_list.value
  return np.frombuffer(data, "<f2").reshape([-1, num_labels]).astype(
      np.float32)


def _targets(trained_run, cache_dir, **overrides):  # pylint: disable=redefined-outer-name
  workspace, config, features = trained_run
  teacher = teacher_lib.TeacherRun.load(config.output_dir)
  arguments = dict(student_labels=teacher.labels,
                   student_vocab_file=workspace["vocab_file"])
  arguments.update(overrides)
  return teacher, teacher_lib.targets_file(teacher, features, str(cache_dir),
                                           **arguments)


def _teacher_log_distribution(teacher, windows):
  """float32 [B, T, L] of the teacher graph on unpadded equal-length windows."""
  with tf.Graph().as_default():
    inputs = {key: tf.constant(np.array([window[key] for window in windows],
                                        np.int32))
              for key in (schema.INPUT_IDS, schema.INPUT_MASK,
                          schema.SEGMENT_IDS, schema.WORD_POSITIONS)}
    built = heads.build_head(
        modeling.BertConfig.from_json_file(teacher.bert_config_file),
        teacher.labels, inputs, head=teacher.head)
    with tf1.Session() as session:
      tf1.train.Saver().restore(session, teacher.checkpoint)
      return session.run(built.log_distribution)


@pytest.mark.parametrize("kind", KINDS)
def test_teacher_run_reads_the_manifest_and_latest_checkpoint(trained, kind):  # pylint: disable=redefined-outer-name
  workspace, config, _ = trained[kind]
  teacher = teacher_lib.TeacherRun.load(config.output_dir)
  with open(os.path.join(config.output_dir, schema.LABELS_FILENAME)) as reader:
    assert teacher.labels == reader.read().split()
  assert teacher.checkpoint == os.path.join(config.output_dir, "model.ckpt-3")
  assert teacher.bert_config_file == workspace["bert_config_file"]
  assert teacher.vocab_sha256 == cache_files.file_sha256(
      workspace["vocab_file"])
  # The head of estimator_lib.head_config, from the recorded settings.
  assert teacher.head == estimator_lib.head_config(
      config, tokenization.load_vocab(workspace["vocab_file"]))
  assert teacher.head.kind == kind


@pytest.mark.parametrize("kind", KINDS)
def test_targets_are_the_teacher_distributions_at_distill_positions(
    trained, kind, tmp_path):  # pylint: disable=redefined-outer-name
  teacher, (path, count) = _targets(trained[kind], tmp_path)
  num_labels = len(teacher.labels)
  assert os.path.dirname(path) == str(tmp_path)
  assert os.path.basename(path).startswith("teacher-")
  features, targets = _records(trained[kind][2]), _records(path)
  assert count == len(targets) == len(features) > 4
  meta = input_pipeline.read_feature_meta(path)
  assert meta["num_labels"] == num_labels and meta["num_windows"] == count
  assert meta["length_histogram"] == input_pipeline.read_feature_meta(
      trained[kind][2])["length_histogram"]
  inside = outside = 0
  for feature, target in zip(features, targets):
    # The same record, in the same place, plus the teacher's rows.
    names = set(feature.features.feature)
    assert set(target.features.feature) == names | {schema.TEACHER_LOG_PROBS}
    for name in names:
      assert target.features.feature[name] == feature.features.feature[name]
    stored = _stored(target, num_labels)
    assert stored.shape == (len(_ints(feature, schema.INPUT_IDS)), num_labels)
    keep = teacher_lib.distill_positions(
        _ints(feature, schema.WORD_POSITIONS),
        _ints(feature, schema.INPUT_MASK), _ints(feature, schema.SCORE_MASK))
    np.testing.assert_allclose(np.exp(stored[keep]).sum(-1), 1.0, atol=5e-3)
    assert (stored[keep] < 0).all()
    assert not stored[~keep].any()
    inside += keep.sum()
    outside += (np.array(_ints(feature, schema.WORD_POSITIONS)) >= 0).sum() - (
        keep.sum())
  # Some word starts are scored in another window: their rows are 0 here.
  assert inside > 0 and outside > 0
  # The stored rows are the teacher graph's, recomputed on one window alone.
  window = {key: _ints(features[-1], key) for key in
            (schema.INPUT_IDS, schema.INPUT_MASK, schema.SEGMENT_IDS,
             schema.WORD_POSITIONS, schema.SCORE_MASK)}
  expected = _teacher_log_distribution(teacher, [window])[0]
  keep = teacher_lib.distill_positions(window[schema.WORD_POSITIONS],
                                       window[schema.INPUT_MASK],
                                       window[schema.SCORE_MASK])
  np.testing.assert_allclose(_stored(targets[-1], num_labels)[keep],
                             expected[keep], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_batches_carry_the_stored_rows_aligned_and_zero_padding(
    trained, kind, tmp_path):  # pylint: disable=redefined-outer-name
  teacher, (path, count) = _targets(trained[kind], tmp_path)
  num_labels = len(teacher.labels)
  stored = {(_ints(record, schema.EXAMPLE_INDEX)[0],
             _ints(record, schema.WINDOW_INDEX)[0]): _stored(record, num_labels)
            for record in _records(path)}
  dataset = input_pipeline.input_fn_builder(
      path, is_training=False, batch_size=3, max_seq_length=10,
      num_teacher_labels=num_labels)({})
  seen = 0
  for batch in dataset.as_numpy_iterator():
    log_probs = batch[schema.TEACHER_LOG_PROBS]
    assert log_probs.dtype == np.float32
    assert log_probs.shape == batch[schema.INPUT_IDS].shape + (num_labels,)
    for row, (example, window) in enumerate(zip(batch[schema.EXAMPLE_INDEX],
                                                batch[schema.WINDOW_INDEX])):
      rows = stored[(example, window)]
      np.testing.assert_array_equal(log_probs[row, :len(rows)], rows)
      assert not log_probs[row, len(rows):].any()
      assert batch[schema.INPUT_MASK][row, :len(rows)].all()
      seen += 1
  assert seen == count


def test_targets_are_reused_then_rebuilt_when_damaged(trained, tmp_path,
                                                      caplog):  # pylint: disable=redefined-outer-name
  _, (path, count) = _targets(trained["softmax"], tmp_path)
  with open(path, "rb") as reader:
    first = reader.read()
  caplog.clear()
  with caplog.at_level(logging.INFO):
    _, (again, again_count) = _targets(trained["softmax"], tmp_path)
  assert (again, again_count) == (path, count)
  assert f"Reusing the teacher targets of {count} windows from {path}" in (
      caplog.text)
  assert "Computing the teacher targets" not in caplog.text
  damaged = bytearray(first)
  damaged[len(damaged) // 2] ^= 0xFF
  with open(path, "wb") as writer:
    writer.write(bytes(damaged))
  caplog.clear()
  with caplog.at_level(logging.INFO):
    _targets(trained["softmax"], tmp_path)
  assert (f"Rebuilding the teacher targets {path}: {path} does not match the "
          "SHA-256 in") in caplog.text
  assert "Computing the teacher targets of 7 training windows" in caplog.text
  with open(path, "rb") as reader:
    assert reader.read() == first
  assert sorted(os.listdir(tmp_path)) == [os.path.basename(path),
                                          os.path.basename(path) + ".json"]


def test_another_teacher_checkpoint_gets_another_file(trained, tmp_path):  # pylint: disable=redefined-outer-name
  _, (softmax_path, _) = _targets(trained["softmax"], tmp_path)
  teacher = teacher_lib.TeacherRun.load(trained["softmax"][1].output_dir)
  features = trained["softmax"][2]
  sha256 = input_pipeline.read_feature_meta(features)["sha256"]
  key = teacher_lib.cache_key(teacher, sha256, teacher.labels)
  assert os.path.basename(softmax_path) == f"teacher-{key}.tfrecord"
  assert teacher_lib.cache_key(teacher, sha256, teacher.labels[::-1]) != key
  assert teacher_lib.cache_key(teacher, "0" * 64, teacher.labels) != key
  crf = teacher_lib.TeacherRun.load(trained["crf"][1].output_dir)
  assert teacher_lib.cache_key(crf, sha256, teacher.labels) != key


def test_student_labels_and_vocab_must_be_the_teachers(trained, tmp_path):  # pylint: disable=redefined-outer-name
  _, config, _ = trained["softmax"]
  labels = teacher_lib.TeacherRun.load(config.output_dir).labels
  with pytest.raises(UserError) as error:
    _targets(trained["softmax"], tmp_path, student_labels=labels[::-1])
  assert (f"The student's labels ({' '.join(labels[::-1])}) are not those of "
          f"the teacher --teacher_dir={config.output_dir} ({' '.join(labels)})"
          ) in str(error.value)
  assert (f"--labels_file {config.output_dir}/labels.txt"
          in str(error.value))
  other_vocab = tmp_path / "vocab.txt"
  other_vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nword\n")
  with pytest.raises(UserError, match=r"The student's vocab .*vocab\.txt is "
                     r"not the teacher's .*would be other word-pieces\. Pass "
                     r"--vocab_file the teacher's vocab"):
    _targets(trained["softmax"], tmp_path, student_vocab_file=str(other_vocab))
  assert not glob.glob(str(tmp_path / "teacher-*"))  # refused before building


def _copy_run(trained_run, folder):  # pylint: disable=redefined-outer-name
  shutil.copytree(trained_run[1].output_dir, folder)
  return str(folder)


def _edit_manifest(folder, edit):
  path = os.path.join(folder, schema.RUN_MANIFEST_FILENAME)
  with open(path) as reader:
    manifest = json.load(reader)
  edit(manifest)
  with open(path, "w") as writer:
    json.dump(manifest, writer)


def test_teacher_folder_errors_name_the_folder_and_the_fix(trained, tmp_path):  # pylint: disable=redefined-outer-name
  missing = str(tmp_path / "nowhere")
  with pytest.raises(UserError, match=rf"--teacher_dir={missing} does not "
                     r"exist\. Pass the --output_dir of a finished training "
                     "run"):
    teacher_lib.TeacherRun.load(missing)
  no_manifest = _copy_run(trained["softmax"], tmp_path / "no_manifest")
  os.remove(os.path.join(no_manifest, schema.RUN_MANIFEST_FILENAME))
  with pytest.raises(UserError, match=rf"--teacher_dir={no_manifest} is not a "
                     "finished training run of this trainer: it has no "
                     r"run_manifest\.json"):
    teacher_lib.TeacherRun.load(no_manifest)
  no_checkpoint = str(tmp_path / "no_checkpoint")
  os.makedirs(no_checkpoint)
  shutil.copy(os.path.join(trained["softmax"][1].output_dir,
                           schema.RUN_MANIFEST_FILENAME), no_checkpoint)
  with pytest.raises(UserError, match=rf"--teacher_dir={no_checkpoint} holds "
                     r"no checkpoint.*Train it first"):
    teacher_lib.TeacherRun.load(no_checkpoint)
  broken = _copy_run(trained["softmax"], tmp_path / "broken")
  with open(os.path.join(broken, schema.RUN_MANIFEST_FILENAME), "w") as writer:
    writer.write("{not json")
  with pytest.raises(UserError, match=r"run_manifest\.json is not a readable "
                     "run manifest"):
    teacher_lib.TeacherRun.load(broken)


def test_teacher_model_files_must_be_the_trained_ones(trained, tmp_path):  # pylint: disable=redefined-outer-name
  folder = _copy_run(trained["softmax"], tmp_path / "run")
  moved = str(tmp_path / "moved" / "bert_config.json")

  def move(manifest):
    manifest["files"]["bert_config"]["path"] = moved
  _edit_manifest(folder, move)
  with pytest.raises(UserError, match=rf"The teacher's bert_config file "
                     rf"{moved} \(recorded in {folder}/run_manifest\.json\) is "
                     "missing: .*Put the trained file back at that path"):
    teacher_lib.TeacherRun.load(folder)
  os.makedirs(os.path.dirname(moved))
  with open(moved, "w") as writer:
    writer.write("{}")
  with pytest.raises(UserError, match=rf"The teacher's bert_config file "
                     rf"{moved} changed after --teacher_dir={folder} was "
                     r"trained: its SHA-256 is [0-9a-f]{12}\.\.\., the trained "
                     r"one's [0-9a-f]{12}\.\.\."):
    teacher_lib.TeacherRun.load(folder)


def test_distill_positions_is_the_loss_mask_rule():
  keep = teacher_lib.distill_positions([[-1, 0, 1, -1, 2, 0]],
                                       [[1, 1, 1, 1, 1, 0]],
                                       [[0, 0, 1, 0, 1, 1]])
  assert keep.tolist() == [[False, False, True, False, True, False]]


def test_small_batches_and_chunks_give_the_same_file(trained, tmp_path,
                                                     monkeypatch):  # pylint: disable=redefined-outer-name
  teacher, (path, _) = _targets(trained["crf"], tmp_path / "one_batch")
  # 7 windows in chunks of 2 batches of 2, run shortest first in each.
  monkeypatch.setattr(teacher_lib, "CHUNK_BATCHES", 2)
  _, (small, _) = _targets(trained["crf"], tmp_path / "small", batch_size=2)
  assert os.path.basename(small) == os.path.basename(path)
  first, second = _records(path), _records(small)
  assert len(first) == len(second) == 7
  for one, other in zip(first, second):
    assert _ints(one, schema.EXAMPLE_INDEX) == _ints(other,
                                                     schema.EXAMPLE_INDEX)
    assert _ints(one, schema.WINDOW_INDEX) == _ints(other, schema.WINDOW_INDEX)
    np.testing.assert_allclose(_stored(one, len(teacher.labels)),
                               _stored(other, len(teacher.labels)), atol=2e-3)


def test_a_checkpoint_without_the_recorded_head_is_refused(trained,
                                                           tmp_path):  # pylint: disable=redefined-outer-name
  folder = _copy_run(trained["softmax"], tmp_path / "run")

  def claim_crf(manifest):
    manifest["settings"]["head"] = manifest["model_settings"]["head"] = "crf"
  _edit_manifest(folder, claim_crf)
  teacher = teacher_lib.TeacherRun.load(folder)
  cache_dir = tmp_path / "cache"
  cache_dir.mkdir()
  with pytest.raises(UserError, match=rf"The teacher checkpoint {folder}/"
                     r"model\.ckpt-3 does not hold the model its "
                     r"run_manifest\.json describes \(.*, head crf\): .*"
                     "Pass another --teacher_dir"):
    teacher_lib.targets_file(teacher, trained["softmax"][2], str(cache_dir),
                             teacher.labels,
                             trained["softmax"][0]["vocab_file"])
  assert not os.listdir(cache_dir)  # the temporary file is gone
