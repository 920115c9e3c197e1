"""Graph tests: the whole pipeline with a tiny BERT, a few steps each."""

import dataclasses
import json
import os

import numpy as np
import pytest
from seqeval import metrics as seqeval_metrics
import tensorflow as tf

from tests.pipeline_fixtures import assert_served_like_predict
from tests.tiny_bert import checkpoint_variables
from tests.tiny_bert import make_config
from tests.tiny_bert import no_dropout_bert_config
from tests.tiny_bert import write_tiny_checkpoint
from trainer.training import estimator_lib
from trainer.features import windows as windows_lib
from trainer.features import input_pipeline
from trainer import schema
from trainer.features import tokenization
from trainer.run import train_lib
from trainer.errors import UserError
from trainer.tf_compat import modeling


def test_train_eval_predict_export_and_serve(workspace):
  config = make_config(workspace, do_train=True, do_eval=True, do_predict=True,
                   do_export=True)
  summary = train_lib.run(config)
  out = config.output_dir

  assert summary["train_steps"] == 3
  assert tf.train.latest_checkpoint(out).endswith("model.ckpt-3")
  with open(os.path.join(out, "labels.txt"), encoding="utf-8") as reader:
    assert reader.read().split() == ["O", "B-LOC", "B-ORG", "B-PER", "I-LOC"]
  eval_results = summary["eval"]
  for key in ("loss", "entity_f1", "entity_precision", "entity_recall",
              "entity_PER_f1", "entity_LOC_f1", "entity_ORG_f1",
              "token_accuracy", "global_step"):
    assert key in eval_results, key
  # The in-graph metrics are seqeval's over the dev predictions the run
  # wrote (gold and predicted tag strings, eval_predictions.conll).
  with open(os.path.join(out, schema.EVAL_PREDICTIONS_CONLL_FILENAME),
            encoding="utf-8") as reader:
    rows = [[line.split() for line in block.split("\n")]
            for block in reader.read().strip().split("\n\n")]
  gold = [[columns[1] for columns in block] for block in rows]
  predicted = [[columns[2] for columns in block] for block in rows]
  assert [len(tags) for tags in gold] == [5, 19]
  for key, score in (("entity_f1", seqeval_metrics.f1_score),
                     ("entity_precision", seqeval_metrics.precision_score),
                     ("entity_recall", seqeval_metrics.recall_score)):
    assert eval_results[key] == pytest.approx(score(gold, predicted),
                                              abs=1e-6), key
  with open(os.path.join(out, "eval_results.txt"), encoding="utf-8") as reader:
    assert (f"entity_f1 = {eval_results['entity_f1']}"
            in reader.read().split("\n"))

  # Every input token gets exactly one prediction.
  assert summary["predict"]["sentences"] == 3
  assert summary["predict"]["tokens"] == 6 + 5 + 19
  with open(os.path.join(out, "predictions.conll"), encoding="utf-8") as f:
    conll_blocks = f.read().strip().split("\n\n")
  assert [len(b.split("\n")) for b in conll_blocks] == [6, 5, 19]
  assert conll_blocks[0].split("\n")[0].split()[:2] == ["John", "B-PER"]
  with open(os.path.join(out, "predictions.jsonl"), encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  assert records[1]["text"] == "Mary went to Paris ."
  assert len(records[2]["tags"]) == 19

  # Export layout and assets.
  export_dir = summary["export"]
  assert export_dir == os.path.join(out, "export", "1")
  assert sorted(os.listdir(os.path.join(export_dir, "assets"))) == [
      "labels.txt", "run_manifest.json", "vocab.txt"]
  with open(os.path.join(export_dir, "assets.extra", "ner_config.json"),
            encoding="utf-8") as reader:
    assert json.load(reader)["max_seq_length"] == 10

  # Serve: load the SavedModel and call serving_default on the same windows
  # the trainer predicted; tags must equal predictions.conll (no skew).
  tokenizer = tokenization.NerTokenizer(workspace["vocab_file"], True)
  loaded = tf.saved_model.load(export_dir)
  serve = loaded.signatures[schema.SERVING_DEFAULT_SIGNATURE]
  words = records[2]["tokens"]
  windows = windows_lib.convert_sentence(words, None, 0, tokenizer, 10, 3)
  assert len(windows) > 1  # the long sentence really is split
  outputs = []
  for window in windows:
    result = serve(**{key: tf.constant([getattr(window, key)], tf.int32)
                      for key in schema.MODEL_INPUT_KEYS})
    assert set(result) == {"tags", "label_ids", "scores"}
    assert result["tags"].dtype == tf.string
    outputs.append({
        schema.EXAMPLE_INDEX: 0,
        schema.WORD_POSITIONS: window.word_positions,
        schema.SCORE_MASK: window.score_mask,
        "tag": [t.decode() for t in result["tags"].numpy()[0]],
        "score": result["scores"].numpy()[0]})
  merged = windows_lib.merge_window_outputs(outputs, [len(words)])[0]
  assert merged["tag"] == records[2]["tags"]
  np.testing.assert_allclose(merged["score"], records[2]["scores"], atol=1e-5)

  # A second export gets the next version; the first is kept.
  config.do_train = config.do_eval = config.do_predict = False
  second = train_lib.run(config)["export"]
  assert second == os.path.join(out, "export", "2")
  assert os.path.isdir(export_dir)


@pytest.mark.slow  # end to end, tens of seconds
def test_rerun_resumes_and_reuses_feature_cache(workspace, caplog):
  config = make_config(workspace, do_train=True, num_train_steps=2)
  train_lib.run(config)
  cache_dir = os.path.join(config.output_dir, "cache")
  cached = sorted(os.listdir(cache_dir))
  mtimes = [os.path.getmtime(os.path.join(cache_dir, f)) for f in cached]
  config.num_train_steps = 4
  caplog.set_level("INFO", logger="absl")
  train_lib.run(config)
  assert tf.train.latest_checkpoint(config.output_dir).endswith("ckpt-4")
  assert sorted(os.listdir(cache_dir)) == cached
  assert [os.path.getmtime(os.path.join(cache_dir, f)) for f in cached] == \
      mtimes
  assert "Reusing" in caplog.text
  # A different max_seq_length is a different cache entry.
  config.max_seq_length, config.num_train_steps = 12, 5
  train_lib.run(config)
  assert len(os.listdir(cache_dir)) == len(cached) + 2


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_bert_keeps_restored_variables_bit_identical(workspace, freeze):
  checkpoint = write_tiny_checkpoint(workspace)
  config = make_config(workspace, do_train=True, init_checkpoint=checkpoint,
                   freeze_bert=freeze, num_train_steps=3,
                   save_checkpoints_steps=1, keep_checkpoint_max=10)
  train_lib.run(config)
  initial = checkpoint_variables(checkpoint)
  start = checkpoint_variables(os.path.join(config.output_dir, "model.ckpt-0"))
  final = checkpoint_variables(tf.train.latest_checkpoint(config.output_dir))
  bert_names = [name for name in initial if name.startswith("bert/")]
  assert len(bert_names) == 23  # 5 embeddings + 16 in the layer + 2 pooler
  for name in bert_names:
    # Restored correctly at step 0 in both modes.
    np.testing.assert_array_equal(start[name], initial[name])
  changed = [name for name in bert_names
             if not np.array_equal(final[name], initial[name])]
  if freeze:
    assert changed == []
    assert not any("adam" in name and name.startswith("bert/")
                   for name in final)
  else:
    # Everything but the pooler, which the NER loss does not reach.
    assert changed == [n for n in bert_names if not n.startswith("bert/pooler")]
  for name in ("ner_head/output_weights", "ner_head/output_bias"):
    assert not np.array_equal(final[name], start[name]), name


@pytest.mark.slow  # end to end, tens of seconds
def test_eval_only_reuses_saved_labels(workspace):
  config = make_config(workspace, do_train=True, num_train_steps=1)
  train_lib.run(config)
  config.do_train, config.do_eval = False, True
  results = train_lib.run(config)["eval"]
  assert results["global_step"] == 1


def test_unknown_dev_label_names_file_and_flag(workspace):
  with open(os.path.join(workspace["data_dir"], "dev.txt"), "a",
            encoding="utf-8") as writer:
    writer.write("\nBerlin B-GPE\n")
  config = make_config(workspace, do_train=True, do_eval=True, num_train_steps=1)
  with pytest.raises(ValueError, match=r"dev\.txt:\d+.*'B-GPE'.*--labels_file"):
    train_lib.run(config)


@pytest.mark.slow  # end to end, tens of seconds
def test_bucketed_and_fixed_padding_give_the_same_predictions(workspace):
  config = make_config(workspace, do_train=True, num_train_steps=3,
                   bucket_boundaries=[7, 9])
  train_lib.run(config)
  results = {}
  for bucketing in (True, False):
    config.do_train, config.do_predict, config.do_eval = False, True, True
    config.bucketing = bucketing
    summary = train_lib.run(config)
    with open(summary["predict"]["jsonl"], encoding="utf-8") as reader:
      results[bucketing] = ([json.loads(line) for line in reader],
                            summary["eval"])
  (bucketed, bucketed_eval), (fixed, fixed_eval) = results[True], results[False]
  assert [r["tags"] for r in bucketed] == [r["tags"] for r in fixed]
  for a, b in zip(bucketed, fixed):
    np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
  assert bucketed_eval["entity_f1"] == fixed_eval["entity_f1"]
  np.testing.assert_allclose(bucketed_eval["token_loss"],
                             fixed_eval["token_loss"], rtol=1e-5)


@pytest.mark.parametrize("head", [
    "crf", pytest.param("bilstm_crf", marks=pytest.mark.slow)])
def test_crf_heads_train_eval_predict(workspace, head):
  config = make_config(workspace, do_train=True, do_eval=True, do_predict=True,
                   head=head, lstm_units=8, crf_constrain_bio=True,
                   num_train_steps=4)
  summary = train_lib.run(config)
  out = config.output_dir
  final = checkpoint_variables(tf.train.latest_checkpoint(out))
  assert final["ner_head/crf/transitions"].shape == (5, 5)
  if head == "bilstm_crf":
    assert any(name.startswith("ner_head/bilstm_0/") for name in final)
  assert summary["predict"]["tokens"] == 30
  assert "token_loss" in summary["eval"]
  with open(summary["predict"]["jsonl"], encoding="utf-8") as reader:
    records = [json.loads(line) for line in reader]
  labels = ["O", "B-LOC", "B-ORG", "B-PER", "I-LOC"]
  for record in records:
    previous = "O"
    for tag in record["tags"]:
      assert tag in labels
      # Constrained decoding: an I-X only follows B-X or I-X.
      if tag.startswith("I-"):
        assert previous[2:] == tag[2:] and previous != "O", record["tags"]
      previous = tag
    assert all(0.0 <= score <= 1.0 for score in record["scores"])


@pytest.mark.parametrize("head", ["softmax", "bilstm_crf"])
def test_frozen_graph_has_no_gradient_into_bert(workspace, head):
  from trainer.model import heads as model_lib  # pylint: disable=import-outside-toplevel
  from trainer.training import model_fn as model_fn_lib  # pylint: disable=import-outside-toplevel
  checkpoint = write_tiny_checkpoint(workspace)
  bert_config = modeling.BertConfig.from_json_file(workspace["bert_config_file"])
  labels = ["O", "B-LOC", "I-LOC"]
  for freeze, expect_bert_gradients in ((True, False), (False, True)):
    model_fn = model_fn_lib.model_fn_builder(
        bert_config, labels, checkpoint, 1e-3, 10, 1, freeze,
        head=model_lib.HeadConfig(kind=head, lstm_units=4))
    with tf.Graph().as_default() as graph:
      features = {key: tf.ones([2, 5], tf.int32) for key in (
          "input_ids", "input_mask", "segment_ids", "label_ids",
          "word_positions", "score_mask")}
      model_fn(features, None, tf.estimator.ModeKeys.TRAIN, {})
      gradient_ops = [op.name for op in graph.get_operations()
                      if op.name.startswith("gradients/")]
    assert gradient_ops  # the head does get gradients
    into_bert = [name for name in gradient_ops
                 if name.startswith("gradients/bert/")]
    assert bool(into_bert) == expect_bert_gradients, into_bert[:3]


def test_amp_and_xla_flags_build_and_train_on_cpu(workspace):
  config = make_config(workspace, do_train=True, use_amp=True, use_xla=True,
                   num_train_steps=3)
  train_lib.run(config)
  final = checkpoint_variables(tf.train.latest_checkpoint(config.output_dir))
  # Finite gradients on every step: the scale has not been halved.
  assert final["loss_scale"] == 2.0 ** 15
  assert final["loss_scale_good_steps"] == 3
  assert final["global_step"] == 3
  proto = estimator_lib.session_config(config)
  assert proto.graph_options.rewrite_options.auto_mixed_precision == 1
  assert proto.graph_options.optimizer_options.global_jit_level == 1


@pytest.mark.slow  # end to end, tens of seconds
def test_periodic_eval_exports_best_checkpoint(workspace):
  config = make_config(workspace, do_train=True, do_eval=True, do_export=True,
                   num_train_steps=4, eval_every_steps=2,
                   save_checkpoints_steps=2)
  summary = train_lib.run(config)
  best_dir = os.path.join(config.output_dir, "export_best")
  with open(os.path.join(best_dir, "best_export.json"),
            encoding="utf-8") as reader:
    record = json.load(reader)
  assert record["metric"] == "entity_f1"
  # The recorded best is the highest F1 seen; its export is the last version.
  assert record["version_dir"] == os.path.join(
      best_dir, str(max(int(v) for v in os.listdir(best_dir) if v.isdigit())))
  assert record["value"] >= summary["eval"]["entity_f1"]
  assert os.path.isdir(summary["export"])


@pytest.mark.slow  # end to end, tens of seconds
def test_crf_export_serves_viterbi_tags_equal_to_do_predict(workspace):
  config = make_config(workspace, do_train=True, do_predict=True, do_export=True,
                   head="crf", crf_constrain_bio=True, num_train_steps=6)
  summary = train_lib.run(config)
  assert_served_like_predict(summary, compare_entities=True)


def test_gradient_accumulation_matches_large_batch(workspace):
  config_path = no_dropout_bert_config(workspace)
  finals = {}
  for name, accumulation in (("big_batch", 1), ("accumulated", 4)):
    config = make_config(workspace, output_dir=str(workspace["tmp"] / name),
                     bert_config_file=str(config_path), do_train=True,
                     train_batch_size=8, gradient_accumulation_steps=accumulation,
                     bucketing=False, head_dropout=0.0, num_train_steps=3,
                     learning_rate=1e-3, save_checkpoints_steps=1,
                     keep_checkpoint_max=10)
    train_lib.run(config)
    finals[name] = checkpoint_variables(tf.train.latest_checkpoint(config.output_dir))
    start = checkpoint_variables(os.path.join(config.output_dir, "model.ckpt-0"))
  assert finals["accumulated"]["global_step"] == 3
  assert finals["accumulated"]["gradient_accumulation_micro_step"] == 12
  for name in ("ner_head/output_weights", "bert/encoder/layer_0/output/dense/kernel"):
    big = finals["big_batch"][name] - start[name]
    accumulated = finals["accumulated"][name] - start[name]
    assert np.abs(big).max() > 0
    # Equal up to float rounding, which Adam amplifies for near-zero
    # gradients (m / sqrt(v) is +-1 whatever their size): within 2% of the
    # largest update.
    np.testing.assert_allclose(accumulated, big, rtol=0, atol=0.02 * np.abs(big).max())


@pytest.mark.slow  # end to end, tens of seconds
def test_output_dir_on_a_tf_filesystem(workspace):
  # ram:// stands in for gs://: every output path goes through tf.io.gfile.
  config = make_config(workspace, output_dir="ram://ner_test_output",
                   do_train=True, do_eval=True, do_predict=True,
                   num_train_steps=2)
  summary = train_lib.run(config)
  assert tf.train.latest_checkpoint("ram://ner_test_output").endswith("-2")
  for name in ("labels.txt", "eval_results.txt", "predictions.conll",
               "predictions.jsonl"):
    assert tf.io.gfile.exists("ram://ner_test_output/" + name), name
  assert summary["predict"]["tokens"] == 30


MIRRORED_SCRIPT = """
import json, sys
from trainer.training import estimator_lib
from trainer.run import train_lib
settings, devices = json.loads(sys.argv[1]), json.loads(sys.argv[2])
train_lib.run(train_lib.NerConfig(**settings),
              estimator_lib.DeviceOverrides(distribution_devices=devices))
"""


@pytest.mark.slow  # end to end, tens of seconds
def test_mirrored_strategy_on_two_cpus_matches_one_device(workspace):
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  config_path = no_dropout_bert_config(workspace)
  results = {}
  for name, devices in (("one", None), ("mirrored", ["/cpu:0", "/cpu:1"])):
    config = make_config(workspace, output_dir=str(workspace["tmp"] / name),
                     bert_config_file=str(config_path), do_train=True,
                     train_batch_size=4, bucketing=False, head_dropout=0.0,
                     num_train_steps=3, learning_rate=1e-3,
                     save_checkpoints_steps=1, keep_checkpoint_max=10)
    # A fresh process: logical CPU devices must be set before TF starts.
    subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT,
                    json.dumps(dataclasses.asdict(config)),
                    json.dumps(devices)],
                   check=True, timeout=300, capture_output=True,
                   cwd=os.path.dirname(os.path.dirname(__file__)))
    results[name] = checkpoint_variables(tf.train.latest_checkpoint(config.output_dir))
    start = checkpoint_variables(os.path.join(config.output_dir, "model.ckpt-0"))
  assert results["mirrored"]["global_step"] == 3
  for name in ("ner_head/output_weights",
               "bert/encoder/layer_0/output/dense/kernel"):
    one = results["one"][name] - start[name]
    mirrored = results["mirrored"][name] - start[name]
    assert np.abs(one).max() > 0
    # Same update as one device (global clipping included), up to float
    # rounding amplified by Adam.
    np.testing.assert_allclose(mirrored, one, rtol=0,
                               atol=1e-3 * np.abs(one).max())


@pytest.mark.slow  # end to end, tens of seconds
def test_tpu_estimator_path_without_tpu(workspace):
  # The TPUEstimator code path (fixed shapes, padded eval/predict batches,
  # TPUEstimatorSpec) with use_tpu=False, as on a machine without a TPU.
  checkpoint = write_tiny_checkpoint(workspace)
  config = make_config(workspace, init_checkpoint=checkpoint,
                   do_train=True, do_eval=True, do_predict=True,
                   do_export=True, eval_batch_size=4, predict_batch_size=4,
                   num_tpu_cores=1, iterations_per_loop=2, num_train_steps=4)
  summary = train_lib.run(
      config, estimator_lib.DeviceOverrides(tpu_estimator=True))
  assert tf.train.latest_checkpoint(config.output_dir).endswith("ckpt-4")
  assert summary["eval"]["global_step"] == 4
  # Eval batches padded to full ones score as the plain Estimator scores the
  # same checkpoint: the padding windows count for nothing.
  plain = train_lib.run(dataclasses.replace(
      config, do_train=False, do_predict=False, do_export=False))["eval"]
  for key in ("entity_f1", "entity_precision", "entity_recall",
              "token_accuracy"):
    assert summary["eval"][key] == pytest.approx(plain[key], abs=1e-6), key
  # 3 sentences in 4 windows padded to 2 full batches of 4: padding dropped.
  assert summary["predict"]["sentences"] == 3
  assert summary["predict"]["tokens"] == 30
  served = tf.saved_model.load(summary["export"]).signatures[
      "serving_default"]
  result = served(input_ids=tf.constant([[2, 5, 6, 3]]),
                  input_mask=tf.constant([[1, 1, 1, 1]]),
                  segment_ids=tf.constant([[0, 0, 0, 0]]))
  assert result["tags"].shape == (1, 4)


def test_num_steps():
  config = train_lib.NerConfig(num_train_epochs=3.0, train_batch_size=32)
  assert train_lib.num_steps(config, 100) == 10  # ceil(300 / 32)
  assert train_lib.num_steps(config, 0) == 1
  config.num_train_steps = 7
  assert train_lib.num_steps(config, 100) == 7


def test_write_key_values(tmp_path):
  path = str(tmp_path / "eval_results.txt")
  train_lib.write_key_values({"loss": 0.5, "entity_f1": 0.25,
                              "global_step": 3}, path)
  with open(path, encoding="utf-8") as reader:
    assert reader.read() == "entity_f1 = 0.25\nglobal_step = 3\nloss = 0.5\n"


def test_format_summary():
  config = train_lib.NerConfig(output_dir="out", data_dir="data")
  summary = {"labels": ["O", "B-X"], "train_steps": 5,
             "eval": {"entity_f1": 0.5, "entity_precision": 0.25,
                      "entity_recall": 1.0},
             "predict": {"sentences": 2, "tokens": 9, "conll": "out/p.conll",
                         "jsonl": "out/p.jsonl", "metrics": {"f1": 0.75}},
             "export": "out/export/1"}
  assert train_lib.format_summary(config, summary).split("\n") == [
      "", "==== BERT-NER run finished ====",
      "output_dir:   out",
      "labels:       O B-X",
      "trained to:   step 5 (checkpoints in out)",
      "eval:         entity F1 0.5000, precision 0.2500, recall 1.0000 "
      "(out/eval_results.txt)",
      "predictions:  2 sentences, 9 tokens -> out/p.conll, out/p.jsonl",
      "predict F1:   0.7500",
      "SavedModel:   out/export/1"]


def test_predict_without_a_trained_model_is_explained(tmp_path):
  data = tmp_path / "test.txt"
  data.write_text("EU B-ORG\nrejects O\n", encoding="utf-8")
  labels = tmp_path / "labels.txt"
  labels.write_text("O\nB-ORG\n", encoding="utf-8")
  config = train_lib.NerConfig(predict_file=str(data), labels_file=str(labels),
                               train_file=str(data), do_predict=True,
                               output_dir=str(tmp_path / "out"))
  with pytest.raises(UserError, match="holds no checkpoint.*--do_train"):
    train_lib.run(config)


def test_full_disk_while_writing_features_is_a_user_error(workspace,
                                                          monkeypatch):
  def full_disk(windows, path):
    raise tf.errors.ResourceExhaustedError(
        None, None, f"{path}.tmp-1; No space left on device")
  monkeypatch.setattr(input_pipeline, "write_features", full_disk)
  config = make_config(workspace, do_train=True)
  with pytest.raises(UserError, match=(
      f"^{config.output_dir}/cache/train-[0-9a-f]{{16}}.tfrecord.tmp-1: no "
      f"space left on device \\(--output_dir={config.output_dir}\\)$")):
    train_lib.run(config)
