"""--export_constant_weights: the same signatures with weights as constants."""

import numpy as np
import tensorflow as tf

from serving.server import saved_model_session
from tests import serving_fixtures
from trainer import schema
from trainer.export import exporter
from trainer.export import export_versions


def _inputs():
  """serving_default inputs: 3 windows of [CLS], 4 pieces, [SEP], padding."""
  ids = np.zeros([3, serving_fixtures.MAX_SEQ_LENGTH], np.int32)
  ids[:, 0], ids[:, 1:5], ids[:, 5] = 2, 7, 3
  return {schema.INPUT_IDS: ids, schema.INPUT_MASK: (ids > 0).astype(np.int32),
          schema.SEGMENT_IDS: np.zeros_like(ids)}


def test_constant_weight_export_serves_what_the_variable_export_serves(
    tmp_path):
  served = serving_fixtures.served_model()
  version_dir = exporter.export_model(
      str(tmp_path / "export"),
      tf.train.latest_checkpoint(served["output_dir"]),
      served["bert_config_file"], served["vocab_file"], served["labels_file"],
      dict(served["ner_config"], constant_weights=True))
  assert export_versions.latest_version_dir(str(tmp_path / "export")) == (
      version_dir)
  constant = saved_model_session.SessionSavedModel(version_dir)
  variable = saved_model_session.SessionSavedModel(served["version_dir"])
  try:
    op_types = {node.op for node in constant._session.graph.as_graph_def().node}  # pylint: disable=protected-access
    assert not op_types & {"VarHandleOp", "VariableV2", "ReadVariableOp"}
    assert set(constant.signature_defs) == set(variable.signature_defs)
    inputs = _inputs()
    got = constant.run(schema.SERVING_DEFAULT_SIGNATURE, inputs)
    want = variable.run(schema.SERVING_DEFAULT_SIGNATURE, inputs)
    assert sorted(got) == sorted(want)
    for key, value in want.items():
      if value.dtype.kind == "f":
        np.testing.assert_allclose(got[key], value, atol=1e-5)
      else:
        np.testing.assert_array_equal(got[key], value)
  finally:
    constant.close()
    variable.close()
