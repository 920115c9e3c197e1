"""Tiny BERT models and workspaces shared by the graph tests.

A 1-layer, 32-wide BERT with a 20-piece vocab trains a few steps in seconds,
so tests can run the whole pipeline. This module holds what several test
files need: the config and vocab, a Google-layout checkpoint of random
weights (`save_random_bert`), the on-disk workspace (vocab, bert_config.json,
a CoNLL data folder; `write_workspace` / the `workspace` fixture) and a
`NerConfig` over it (`make_config`).

Example::

    from tests.tiny_bert import workspace  # noqa: F401  (the fixture)

    def test_something(workspace):
      config = make_config(workspace, do_train=True)
      train_lib.run(config)
"""

import json

import pytest
import tensorflow as tf

from tests.pipeline_fixtures import DEV
from tests.pipeline_fixtures import TRAIN
from trainer.run import train_lib
from trainer.tf_compat import modeling

tf1 = tf.compat.v1

TINY_CONFIG = {
    "vocab_size": 0,  # set from the vocab
    "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
    "intermediate_size": 37, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 64, "type_vocab_size": 2,
    "initializer_range": 0.02,
}
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "john", "lives", "in",
         "new", "york", "city", "mary", "went", "to", "paris", "the", "un",
         "met", "##s", "."]


def google_variable_names(num_layers):
  """Variable names of Google's BERT checkpoints (bert_model.ckpt)."""
  names = ["bert/embeddings/word_embeddings",
           "bert/embeddings/token_type_embeddings",
           "bert/embeddings/position_embeddings",
           "bert/embeddings/LayerNorm/beta",
           "bert/embeddings/LayerNorm/gamma"]
  for layer in range(num_layers):
    prefix = "bert/encoder/layer_%d/" % layer
    for part in ("attention/self/query", "attention/self/key",
                 "attention/self/value", "attention/output/dense"):
      names += [prefix + part + "/kernel", prefix + part + "/bias"]
    names += [prefix + "attention/output/LayerNorm/beta",
              prefix + "attention/output/LayerNorm/gamma"]
    for part in ("intermediate/dense", "output/dense"):
      names += [prefix + part + "/kernel", prefix + part + "/bias"]
    names += [prefix + "output/LayerNorm/beta",
              prefix + "output/LayerNorm/gamma"]
  names += ["bert/pooler/dense/kernel", "bert/pooler/dense/bias"]
  return names


def write_text(path, text):
  """Writes UTF-8 `text` to the pathlib `path`; returns it as a str."""
  path.write_text(text, encoding="utf-8")
  return str(path)


def save_random_bert(prefix, bert_config):
  """A 'pre-trained' checkpoint in Google's layout, random weights.

  Args:
    prefix: str, the checkpoint prefix, e.g. ".../bert_model.ckpt".
    bert_config: dict of BertConfig fields, or a `modeling.BertConfig`.

  Returns:
    `prefix`, now holding every `bert/...` variable of `modeling.BertModel`.
  """
  if isinstance(bert_config, dict):
    bert_config = modeling.BertConfig.from_dict(bert_config)
  with tf.Graph().as_default():
    ids = tf1.placeholder(tf.int32, [None, None])
    modeling.BertModel(bert_config, False, ids)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      tf1.train.Saver().save(session, prefix)
  return prefix


def checkpoint_variables(checkpoint):
  """{variable name: numpy value} of every variable in `checkpoint`."""
  reader = tf.train.load_checkpoint(checkpoint)
  return {name: reader.get_tensor(name)
          for name, _ in tf.train.list_variables(checkpoint)}


def bert_config_dict(vocab_size=len(VOCAB), **overrides):
  """`TINY_CONFIG` for a `vocab_size`-piece vocab, updated by `overrides`."""
  return dict(TINY_CONFIG, vocab_size=vocab_size, **overrides)


def write_model_files(folder, vocab=VOCAB, **overrides):
  """vocab.txt and bert_config.json (`bert_config_dict`) in `folder`.

  Args:
    folder: pathlib folder.
    vocab: the word-pieces, one a line; sets vocab_size.
    **overrides: BertConfig fields that differ from `TINY_CONFIG`.

  Returns:
    (bert_config_file, vocab_file) as str.
  """
  vocab_file = write_text(folder / "vocab.txt",
                          "".join(piece + "\n" for piece in vocab))
  bert_config_file = write_text(folder / "bert_config.json", json.dumps(
      bert_config_dict(len(vocab), **overrides)))
  return bert_config_file, vocab_file


def write_checkpoint_dir(folder, vocab=VOCAB, **overrides):
  """A Google-layout model folder: `write_model_files` + bert_model.ckpt.

  Returns `folder` as str; its checkpoint is `folder`/bert_model.ckpt.
  """
  write_model_files(folder, vocab, **overrides)
  save_random_bert(str(folder / "bert_model.ckpt"),
                   bert_config_dict(len(vocab), **overrides))
  return str(folder)


def write_workspace(folder):
  """vocab.txt, bert_config.json and data/{train,dev,test}.txt in `folder`.

  Returns {"vocab_file", "bert_config_file", "data_dir", "tmp"} (paths as
  str, "tmp" the pathlib folder).
  """
  bert_config, vocab = write_model_files(folder)
  data_dir = folder / "data"
  data_dir.mkdir()
  write_text(data_dir / "train.txt", TRAIN)
  write_text(data_dir / "dev.txt", DEV)
  write_text(data_dir / "test.txt", TRAIN)
  return {"vocab_file": vocab, "bert_config_file": bert_config,
          "data_dir": str(data_dir), "tmp": folder}


@pytest.fixture()
def workspace(tmp_path):
  """`write_workspace` in the test's tmp_path."""
  return write_workspace(tmp_path)


def make_config(workspace, **overrides):  # pylint: disable=redefined-outer-name
  """A small, fast `NerConfig` over `workspace`, updated by `overrides`."""
  settings = dict(
      output_dir=str(workspace["tmp"] / "out"),
      data_dir=workspace["data_dir"],
      bert_config_file=workspace["bert_config_file"],
      vocab_file=workspace["vocab_file"],
      max_seq_length=10, doc_stride=3, train_batch_size=2, eval_batch_size=2,
      predict_batch_size=3, learning_rate=1e-2, num_train_steps=3,
      save_checkpoints_steps=100, seed=1)
  settings.update(overrides)
  return train_lib.NerConfig(**settings)


def no_dropout_bert_config(workspace):  # pylint: disable=redefined-outer-name
  """The tiny config without dropout, for runs that must match exactly."""
  path = workspace["tmp"] / "bert_config_nodrop.json"
  path.write_text(json.dumps(bert_config_dict(
      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)))
  return path


def write_tiny_checkpoint(workspace):  # pylint: disable=redefined-outer-name
  """`save_random_bert` of the workspace's config, under <tmp>/ckpt/."""
  return save_random_bert(
      str(workspace["tmp"] / "ckpt" / "bert_model.ckpt"),
      modeling.BertConfig.from_json_file(workspace["bert_config_file"]))


def _bert_config_file(workspace, num_layers, dropout):  # pylint: disable=redefined-outer-name
  path = workspace["tmp"] / f"bert_config_{num_layers}_{dropout}.json"
  path.write_text(json.dumps(bert_config_dict(
      num_hidden_layers=num_layers, hidden_dropout_prob=dropout,
      attention_probs_dropout_prob=dropout)))
  return str(path)


@pytest.fixture(scope="session")
def frozen_checkpoint(tmp_path_factory):
  """The 2-layer random BERT of `frozen`, written once per test session.

  Shared by every test that uses `frozen`: read it (init_checkpoint), never
  write next to it.
  """
  return save_random_bert(
      str(tmp_path_factory.mktemp("frozen_bert") / "bert_model.ckpt"),
      bert_config_dict(num_hidden_layers=2))


@pytest.fixture()
def frozen(workspace, frozen_checkpoint):  # pylint: disable=redefined-outer-name
  """Workspace with a 2-layer BERT checkpoint and a no-dropout config.

  Adds "checkpoint" (the restored BERT, `frozen_checkpoint`) and
  "no_dropout_config" (its config without dropout, for runs that must equal
  the cached encoder); its "bert_config_file" becomes the 2-layer config with
  dropout 0.1.
  """
  workspace["bert_config_file"] = _bert_config_file(workspace, 2, 0.1)
  workspace["no_dropout_config"] = _bert_config_file(workspace, 2, 0.0)
  workspace["checkpoint"] = frozen_checkpoint
  return workspace


def frozen_config(workspace, name, **overrides):  # pylint: disable=redefined-outer-name
  """`make_config` training a frozen BERT from workspace["checkpoint"].

  Output goes to <tmp>/<name>; a small BiLSTM (8 units) if the head has one.
  """
  settings = dict(output_dir=str(workspace["tmp"] / name),
                  init_checkpoint=workspace["checkpoint"], freeze_bert=True,
                  lstm_units=8, do_train=True)
  settings.update(overrides)
  return make_config(workspace, **settings)
