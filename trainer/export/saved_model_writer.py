"""Writes the SavedModel of an export: graph, weights and assets.

Two forms, both served by TF Serving as they are:

  variables (default)  the graph reads its weights from variables/, restored
                       from the checkpoint (what `tf.compat.v1.saved_model`
                       writes for a trained graph);
  constants            the restored weights are constants of the graph
                       (`convert_variables_to_constants`), with no
                       variables/. oneDNN can then prepare each weight once
                       instead of on every call, and under bfloat16 serving
                       (TF Serving's --mixed_precision=bfloat16) grappler
                       folds the weights' casts into bfloat16 constants, so
                       a single sentence no longer casts every weight. Same
                       signatures, same outputs (to float rounding).
"""

import os
import tempfile
from typing import Any, Callable, Dict, Sequence

import tensorflow as tf

from trainer import schema
from trainer.model import precision

tf1 = tf.compat.v1


def _save(staging: str, session, signature_def_map: Dict[str, Any],
          assets: Sequence[tf.Tensor], main_op) -> None:
  builder = tf1.saved_model.Builder(staging)
  builder.add_meta_graph_and_variables(
      session, [tf1.saved_model.tag_constants.SERVING],
      signature_def_map=signature_def_map, assets_collection=assets,
      main_op=main_op, strip_default_attrs=True)
  builder.save()


def _save_with_constants(staging: str, session,
                         signature_def_map: Dict[str, Any],
                         assets: Sequence[tf.Tensor], main_op) -> None:
  """`_save` of the graph with every variable replaced by its value.

  Keeps what the signatures read and write, the asset paths and the main
  op (the predict_text table's initializer); tensor names are unchanged,
  so the signature defs apply as they are.
  """
  keep = sorted({info.name.split(":")[0]
                 for signature in signature_def_map.values()
                 for info in list(signature.outputs.values())
                 + list(signature.inputs.values())}
                | {tensor.op.name for tensor in assets} | {main_op.name})
  graph_def = tf1.graph_util.convert_variables_to_constants(
      session, session.graph.as_graph_def(), keep)
  with tf.Graph().as_default() as graph:
    tf.import_graph_def(graph_def, name="")
    with tf1.Session(graph=graph) as frozen:
      _save(staging, frozen, signature_def_map,
            [graph.get_tensor_by_name(tensor.name) for tensor in assets],
            graph.get_operation_by_name(main_op.name))


def save_saved_model(staging: str, checkpoint_path: str, vocab_file: str,
                     labels_file: str,
                     build_signatures: Callable[[], Dict[str, Any]],
                     constant_weights: bool = False) -> Dict[str, Any]:
  """Writes the SavedModel (graph, restored variables, assets) to `staging`.

  Args:
    staging: folder to create (must not exist).
    checkpoint_path: checkpoint prefix whose variables are saved.
    vocab_file, labels_file: copied to assets/vocab.txt and assets/labels.txt.
    build_signatures: builds the signatures in the default graph; returns
      {signature name: SignatureDef}.
    constant_weights: save the restored weights as constants of the graph
      (no variables; see the module docstring).

  Returns:
    The signature def map `build_signatures` returned.
  """
  assets_staging = tempfile.mkdtemp(prefix="ner_export_assets_")
  try:
    # Assets keep their base names, so stage them under canonical ones.
    asset_paths = []
    for source, name in ((vocab_file, schema.VOCAB_FILENAME),
                         (labels_file, schema.LABELS_FILENAME)):
      target = os.path.join(assets_staging, name)
      tf.io.gfile.copy(source, target, overwrite=True)
      asset_paths.append(target)
    # float32 whatever the run trained in (TF Serving's --mixed_precision).
    with tf.Graph().as_default() as graph, precision.computing_in(tf.float32):
      signature_def_map = build_signatures()
      for path in asset_paths:
        tf1.add_to_collection(tf1.GraphKeys.ASSET_FILEPATHS, tf.constant(path))
      saver = tf1.train.Saver(tf1.global_variables())
      # Runs at load time (TF Serving and tf.saved_model.load): fills the
      # predict_text character table.
      main_op = tf1.tables_initializer()
      assets = tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS)
      with tf1.Session(graph=graph) as session:
        saver.restore(session, checkpoint_path)
        if constant_weights:
          _save_with_constants(staging, session, signature_def_map, assets,
                               main_op)
        else:
          _save(staging, session, signature_def_map, assets, main_op)
  finally:
    tf.io.gfile.rmtree(assets_staging)
  return signature_def_map
