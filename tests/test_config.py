"""NerConfig.validate: every cross-field check, before any work."""

import dataclasses
import inspect
import json
import os

import pytest

from trainer.run import config as config_lib
from trainer import schema
from trainer.run import train_lib
from trainer.errors import UserError

NerConfig = config_lib.NerConfig
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "john", "paris"]


@pytest.fixture()
def model(tmp_path):
  """A bert_config.json (64 positions, 7 ids) and its 7-piece vocab.txt."""
  bert_config = tmp_path / "bert_config.json"
  bert_config.write_text(json.dumps({"max_position_embeddings": 64,
                                     "vocab_size": len(VOCAB)}))
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("".join(piece + "\n" for piece in VOCAB))
  return str(bert_config), str(vocab)


def _fails_before_any_work(config, message):
  """validate() raises `message`; so does run(), before writing anything."""
  for call in (config.validate, lambda: train_lib.run(config)):
    with pytest.raises(UserError, match=message):
      call()
  assert not os.path.exists(config.output_dir)


def _config(tmp_path, **settings):
  settings.setdefault("output_dir", str(tmp_path / "out"))
  settings.setdefault("do_train", True)
  return NerConfig(**settings)


def test_defaults_validate(tmp_path):
  config = _config(tmp_path)
  before = dataclasses.asdict(config)
  assert config.validate() is None
  # validate() only checks: it changes no field and writes nothing.
  assert dataclasses.asdict(config) == before
  assert not os.path.exists(config.output_dir)
  # With neither data nor model given, the run is the embedded default.
  assert config_lib.uses_embedded_default(config)


def test_max_seq_length_above_the_built_in_tiny_model(tmp_path):
  _fails_before_any_work(
      _config(tmp_path, max_seq_length=600, doc_stride=64),
      r"^Cannot use sequence length 600 because the BERT model was only "
      r"trained up to sequence length 512 \(the built-in tiny model\); pass "
      r"--max_seq_length 512 or less\.$")
  _config(tmp_path, max_seq_length=512).validate()


def test_max_seq_length_above_the_checkpoint(tmp_path, model):
  bert_config, vocab = model
  config = _config(tmp_path, bert_config_file=bert_config, vocab_file=vocab,
                   max_seq_length=128)
  with pytest.raises(UserError, match=(
      "Cannot use sequence length 128 because the BERT model was only trained "
      "up to sequence length 64 \\(--bert_config_file=")):
    config.validate()


def test_vocab_larger_than_bert_config_vocab_size(tmp_path, model):
  bert_config, vocab = model
  with open(vocab, "a", encoding="utf-8") as writer:
    writer.write("london\nberlin\n\n")  # trailing blank lines get no id
  _fails_before_any_work(
      _config(tmp_path, bert_config_file=bert_config, vocab_file=vocab,
              max_seq_length=32, doc_stride=8),
      r"^--bert_config_file=.*bert_config\.json has vocab_size 7 but "
      r"--vocab_file=.*vocab\.txt holds 9 pieces: ids from 7 on have no "
      r"embedding\. Pass the vocab\.txt that came with the checkpoint\.$")


@pytest.mark.parametrize("vocab_size, refused", [
    (100, False), (len(VOCAB), False), (len(VOCAB) - 1, True)])
def test_vocab_smaller_than_vocab_size_is_fine(tmp_path, model, vocab_size,
                                              refused):
  # The bound is exact: a vocab_size of at least the 7 pieces passes, one
  # less leaves the last piece without an embedding.
  bert_config, vocab = model
  with open(bert_config, "w", encoding="utf-8") as writer:
    json.dump({"max_position_embeddings": 64, "vocab_size": vocab_size},
              writer)
  config = _config(tmp_path, bert_config_file=bert_config, vocab_file=vocab,
                   max_seq_length=32, doc_stride=8)
  if refused:
    with pytest.raises(UserError, match=(
        r"has vocab_size 6 but --vocab_file=.*vocab\.txt holds 7 pieces: "
        r"ids from 6 on have no embedding\.")):
      config.validate()
  else:
    assert config.validate() is None


def test_stale_from_scratch_config_in_output_dir_is_checked(tmp_path, model):
  _, vocab = model
  out = tmp_path / "out"
  out.mkdir()
  (out / schema.BERT_CONFIG_FILENAME).write_text(json.dumps(dict(
      config_lib.TINY_BERT_CONFIG, vocab_size=5)))
  with pytest.raises(UserError, match=r"out/bert_config\.json has vocab_size "
                     "5 but --vocab_file=.* holds 7 pieces"):
    _config(tmp_path, vocab_file=vocab).validate()


@pytest.mark.parametrize("text, message", [
    ("{not json", r"is not valid JSON .*pass the bert_config\.json"),
    (json.dumps({"vocab_size": 7}), "has no integer 'max_position_embeddings'"),
    (json.dumps({"max_position_embeddings": 64}), "has no integer 'vocab_size'"),
])
def test_unreadable_bert_config(tmp_path, model, text, message):
  bert_config, vocab = model
  with open(bert_config, "w", encoding="utf-8") as writer:
    writer.write(text)
  with pytest.raises(UserError, match=message):
    _config(tmp_path, bert_config_file=bert_config, vocab_file=vocab,
            max_seq_length=32, doc_stride=8).validate()


@pytest.mark.parametrize("settings, message", [
    (dict(do_train=False), "^At least one of --do_train, --do_eval, "
     "--do_predict or --do_export must be set.$"),
    (dict(max_seq_length=2), r"^--max_seq_length=2 is too small"),
    (dict(doc_stride=0), r"^--doc_stride=0 must be in \[1, max_seq_length - 2 "
     r"= 126\]\.$"),
    (dict(doc_stride=127), r"^--doc_stride=127 must be in \[1, "),
    (dict(train_file="/no/such.txt"), "^--train_file=/no/such.txt: no such "
     "file.$"),
    (dict(data_dir="/no/such/dir"), "^--data_dir=/no/such/dir is not a "
     "directory.$"),
    (dict(train_batch_size=0), "^--train_batch_size=0 must be at least 1.$"),
    (dict(lstm_layers=0), "^--lstm_layers=0 must be at least 1.$"),
    (dict(num_train_steps=0), "^--num_train_steps=0 must be at least 1.$"),
    (dict(learning_rate=0.0), "--learning_rate and --num_train_epochs must "
     "be > 0"),
    (dict(warmup_proportion=1.5), r"^--warmup_proportion=1.5 must be in "
     r"\[0, 1\)\.$"),
    (dict(head_dropout=-0.1), r"^--head_dropout=-0.1 must be in \[0, 1\)"),
    (dict(eval_every_steps=-1), "^--eval_every_steps=-1 must be >= 0.$"),
    (dict(init_checkpoint="/no/bert_model.ckpt"),
     r"/no/bert_model.ckpt.index is missing"),
    (dict(gradient_accumulation_steps=3), "^--gradient_accumulation_steps=3 "
     "must be >= 1 and divide --train_batch_size=32.$"),
    (dict(num_gpus=3), "^--num_gpus=3: --train_batch_size=32 must split "
     "evenly"),
    (dict(num_gpus=2, gradient_accumulation_steps=2), "cannot be combined "
     "with --num_gpus"),
    (dict(sparse_embedding_updates=True, gradient_accumulation_steps=2),
     "^--sparse_embedding_updates runs on one device: it cannot be combined "
     "with --num_gpus, --use_tpu, --gradient_accumulation_steps or a "
     "multi-worker TF_CONFIG.$"),
    (dict(sparse_embedding_updates=True, num_gpus=2),
     "^--sparse_embedding_updates runs on one device"),
    (dict(use_tpu=True), "^--use_tpu needs --tpu_name.$"),
    (dict(use_tpu=True, tpu_name="t", use_amp=True), "^--use_tpu cannot be "
     "combined"),
    (dict(use_tpu=True, tpu_name="t", eval_batch_size=12),
     "^--eval_batch_size=12 must be a multiple of --num_tpu_cores=8.$"),
    (dict(crf_constrain_bio=True), "^--crf_constrain_bio needs --head=crf or "
     "bilstm_crf.$"),
    (dict(head="lstm"), "^--head='lstm' is not one of softmax, crf, "
     "bilstm_crf.$"),
    (dict(data_format="xml"), "^--data_format='xml' is not one of auto, "),
    (dict(bucket_boundaries=[16, 8]), "^--bucket_boundaries=16,8 must be "
     "strictly ascending positive integers"),
    (dict(bucket_boundaries=[0, 8]), "^--bucket_boundaries=0,8 must be"),
])
def test_bad_settings_are_explained(tmp_path, settings, message):
  with pytest.raises(UserError, match=message):
    _config(tmp_path, **settings).validate()


def test_model_file_pairs(tmp_path, model):
  bert_config, vocab = model
  with pytest.raises(UserError, match="^--bert_config_file needs "
                     "--vocab_file of the same model.$"):
    _config(tmp_path, bert_config_file=bert_config).validate()
  checkpoint = tmp_path / "bert_model.ckpt"
  (tmp_path / "bert_model.ckpt.index").write_text("")
  with pytest.raises(UserError, match="^--init_checkpoint needs "
                     "--bert_config_file"):
    _config(tmp_path, init_checkpoint=str(checkpoint)).validate()


def test_lower_case_mismatch_with_checkpoint_name(tmp_path, model):
  bert_config, vocab = model
  ckpt_dir = tmp_path / "uncased_L-12_H-768_A-12"
  ckpt_dir.mkdir()
  (ckpt_dir / "bert_model.ckpt.index").write_text("")
  config = _config(tmp_path, bert_config_file=bert_config, vocab_file=vocab,
                   init_checkpoint=f"{ckpt_dir}/bert_model.ckpt",
                   do_lower_case=False, max_seq_length=32, doc_stride=16)
  with pytest.raises(UserError, match="uncased_L-12_H-768_A-12.*lower"):
    config.validate()
  config.do_lower_case = True
  config.validate()


def test_uses_embedded_default_and_model_files(tmp_path, model):
  bert_config, vocab = model
  out = str(tmp_path / "out")
  assert config_lib.uses_embedded_default(NerConfig(output_dir=out))
  assert config_lib.model_files(NerConfig(output_dir=out)) == (
      os.path.join(out, "bert_config.json"), os.path.join(out, "vocab.txt"))
  with_vocab = NerConfig(output_dir=out, vocab_file=vocab)
  assert not config_lib.uses_embedded_default(with_vocab)
  assert config_lib.model_files(with_vocab) == (
      os.path.join(out, "bert_config.json"), vocab)
  given = NerConfig(output_dir=out, bert_config_file=bert_config,
                    vocab_file=vocab)
  assert config_lib.model_files(given) == (bert_config, vocab)


def test_vocab_size_of_counts_lines_to_the_last_piece(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_text("[PAD]\n\n[UNK]\nx\n\n\n")
  assert config_lib.vocab_size_of(str(path)) == 4


def test_every_field_is_documented_where_it_is_defined():
  lines = inspect.getsource(NerConfig).split("\n")
  for field in dataclasses.fields(NerConfig):
    index = next(i for i, line in enumerate(lines)
                 if line.strip().startswith(f"{field.name}:"))
    documented = "#" in lines[index] or lines[index - 1].strip().startswith("#")
    assert documented, field.name


def test_no_test_only_fields_in_the_production_config():
  names = {field.name for field in dataclasses.fields(NerConfig)}
  assert not names & {"tpu_estimator", "distribution_devices"}


def test_sparse_embedding_updates_refuse_a_multi_worker_job(tmp_path,
                                                            monkeypatch):
  config = _config(tmp_path, sparse_embedding_updates=True)
  config.validate()  # one process: accepted
  monkeypatch.setenv("TF_CONFIG", json.dumps({
      "cluster": {"worker": ["a:1", "b:2"]},
      "task": {"type": "worker", "index": 0}}))
  with pytest.raises(UserError, match="multi-worker TF_CONFIG"):
    config.validate()
