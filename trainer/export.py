"""SavedModel export for TensorFlow Serving.

Layout written by `export_model`::

    <export_dir>/<version>/saved_model.pb        version = 1 + highest existing
    <export_dir>/<version>/variables/...
    <export_dir>/<version>/assets/vocab.txt
    <export_dir>/<version>/assets/labels.txt
    <export_dir>/<version>/assets.extra/ner_config.json

Signature `serving_default` (names from `trainer.schema`)::

    inputs:  input_ids, input_mask, segment_ids   int32 [batch, seq_len]
    outputs: tags       string  [batch, seq_len]  label name per position
             label_ids  int32   [batch, seq_len]
             scores     float32 [batch, seq_len]  probability of the chosen tag

Only positions holding the first word-piece of a word carry a meaningful tag
(the client uses the same feature conversion as training to find them).
"""

import json
import os
import re
import shutil
import tempfile

from absl import logging
import tensorflow as tf

from trainer import schema

tf1 = tf.compat.v1


def serving_input_receiver_fn_builder(asset_files):
  """Receiver for int32 id tensors of shape [batch, seq_len] (dynamic).

  Args:
    asset_files: list of local paths registered as SavedModel assets (they
      land in `assets/` under their base names).
  """

  def serving_input_receiver_fn():
    inputs = {key: tf1.placeholder(tf.int32, [None, None], name=key)
              for key in schema.MODEL_INPUT_KEYS}
    for path in asset_files:
      tf1.add_to_collection(tf1.GraphKeys.ASSET_FILEPATHS, tf.constant(path))
    return tf.estimator.export.ServingInputReceiver(inputs, inputs)

  return serving_input_receiver_fn


def next_version(export_dir):
  """1 + the highest integer version folder in `export_dir` (1 when none)."""
  names = (tf.io.gfile.listdir(export_dir) if tf.io.gfile.isdir(export_dir)
           else [])
  versions = [int(name.rstrip("/")) for name in names
              if re.fullmatch(r"\d+/?", name)]
  return max(versions, default=0) + 1


def export_model(estimator, export_dir, vocab_file, labels_file, ner_config,
                 checkpoint_path=None):
  """Exports the estimator's model as `<export_dir>/<next version>/`.

  Args:
    estimator: a trained `tf.estimator.Estimator` using `model.model_fn_builder`.
    export_dir: base directory of versions (created if needed).
    vocab_file: the vocabulary the model was trained with.
    labels_file: `labels.txt` of the training run.
    ner_config: JSON-serialisable dict written to
      `assets.extra/ner_config.json` (labels, max_seq_length, lower case...).
    checkpoint_path: checkpoint to export (default: latest).

  Returns:
    str, the path of the new version folder.
  """
  staging = tempfile.mkdtemp(prefix="ner_export_assets_")
  try:
    # Assets keep their base names, so stage them under canonical ones.
    assets = []
    for source, name in ((vocab_file, schema.VOCAB_FILENAME),
                         (labels_file, schema.LABELS_FILENAME)):
      target = os.path.join(staging, name)
      tf.io.gfile.copy(source, target, overwrite=True)
      assets.append(target)
    config_path = os.path.join(staging, schema.NER_CONFIG_FILENAME)
    with open(config_path, "w", encoding="utf-8") as writer:
      json.dump(ner_config, writer, indent=2, ensure_ascii=False)
    tmp_base = os.path.join(export_dir, "tmp-export")
    tf.io.gfile.makedirs(tmp_base)
    exported = estimator.export_saved_model(
        tmp_base, serving_input_receiver_fn_builder(assets),
        assets_extra={schema.NER_CONFIG_FILENAME: config_path},
        checkpoint_path=checkpoint_path)
    exported = exported.decode("utf-8") if isinstance(exported, bytes) \
        else exported
    version_dir = os.path.join(export_dir, str(next_version(export_dir)))
    tf.io.gfile.rename(exported, version_dir)
    tf.io.gfile.rmtree(tmp_base)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  logging.info("Exported SavedModel to %s", version_dir)
  return version_dir
