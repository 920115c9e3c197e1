"""The development server's model: input checks, versions, polling."""

import shutil

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving.server import input_checks
from serving.server import model_manager
from tests import serving_fixtures

IDS_SPEC = tf.TensorSpec([None, None], tf.int32)
TEXT_SPEC = tf.TensorSpec([None], tf.string)


@pytest.fixture(scope="module")
def served():
  return serving_fixtures.served_model()


@pytest.fixture(scope="module")
def loaded(served):
  return model_manager.LoadedVersion(served["version_dir"], 1)


def test_to_array_converts_json_and_numpy_inputs():
  assert input_checks.to_array("input_ids", [[2, 5, 3]], IDS_SPEC).tolist() \
      == [[2, 5, 3]]
  text = input_checks.to_array("text", ["北京", {"b64": "/w=="}], TEXT_SPEC)
  assert text.tolist() == ["北京".encode("utf-8"), b"\xff"]
  text = input_checks.to_array("text", np.array(["ab"]), TEXT_SPEC)
  assert text.dtype == object and text.tolist() == [b"ab"]
  assert input_checks.to_array(
      "text", np.array([], object), TEXT_SPEC).shape == (0,)


@pytest.mark.parametrize("value,spec,message", [
    ([[2.5]], IDS_SPEC, "Input x must be int32 but holds 2.5."),
    ([[True]], IDS_SPEC, "Input x must be int32 but holds True."),
    ([[2, 5], [2]], IDS_SPEC, "Input x is not a rectangular int32 array"),
    ([3], TEXT_SPEC, "Input x is not a rectangular string array: expected a "
                     "string or {\"b64\": ...}, got 3"),
    (np.ones([1, 2], np.float32), IDS_SPEC,
     "Input x must be int32 but float32 was given."),
    (np.ones([1], np.int32), TEXT_SPEC,
     "Input x must be string (DT_STRING) but int32 was given."),
    ([2, 5], IDS_SPEC, "Input x must have rank 2 (shape (None, None)) but has "
                       "shape [2]."),
    ([[1, 2]], tf.TensorSpec([None, 3], tf.int32),
     "Input x dimension 1 must be 3, not 2."),
])
def test_to_array_refuses_lossy_or_misshapen_inputs(value, spec, message):
  with pytest.raises(input_checks.ServingError) as error:
    input_checks.to_array("x", value, spec)
  assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
  assert error.value.message.startswith(message)


def test_input_specs_are_the_eager_signatures(served, loaded):
  eager = tf.saved_model.load(served["version_dir"]).signatures
  for name, function in eager.items():
    expected = function.structured_input_signature[1]
    assert list(loaded.input_specs[name]) == sorted(expected)
    assert loaded.input_specs[name] == expected


def test_session_threads_do_not_change_answers(served, loaded):
  single = model_manager.LoadedVersion(served["version_dir"], 1, 1, 1)
  assert single.model.run_options.inter_op_thread_pool == -1
  inputs = {"text": ["张三在北京工作。", "李四"]}
  got, expected = (version.predict("predict_text", inputs)
                   for version in (single, loaded))
  assert got["tags"].tolist() == expected["tags"].tolist()
  np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-6)


def test_loaded_version_signatures_and_warmup(loaded):
  assert sorted(loaded.signatures) == ["predict_examples", "predict_text",
                                       "serving_default"]
  assert sorted(loaded.signature_defs) == sorted(loaded.signatures)
  assert sorted(loaded.input_specs["serving_default"]) == [
      "input_ids", "input_mask", "segment_ids"]
  assert loaded.warm_up() == 3  # one warmup request per signature
  outputs = loaded.predict("predict_text", {"text": ["张三"]})
  assert outputs["lengths"].tolist() == [2]
  assert outputs["tags"].shape == (1, 2)


@pytest.mark.parametrize("signature,inputs,message", [
    ("classify", {}, "Serving signature key \"classify\" not found; this "
                     "model has predict_examples, predict_text, "
                     "serving_default."),
    ("serving_default", {"input_ids": [[1]]},
     "Signature serving_default takes inputs ['input_ids', 'input_mask', "
     "'segment_ids']; missing ['input_mask', 'segment_ids'], unexpected []."),
    ("serving_default", {"input_ids": [[1]], "input_mask": [[1], [1]],
                         "segment_ids": [[0]]},
     "Inputs have different batch sizes: {'input_ids': 1, 'input_mask': 2, "
     "'segment_ids': 1}."),
    ("predict_text", {"text": []},
     "Empty batch: every input has 0 rows; send at least one."),
    ("serving_default", {"input_ids": [[1, 2]], "input_mask": [[1]],
                         "segment_ids": [[0, 0]]},
     "Inputs have mismatched shapes: {'input_ids': [1, 2], 'input_mask': "
     "[1, 1], 'segment_ids': [1, 2]}; input_ids, input_mask, segment_ids "
     "take arrays of one shape [batch, seq_len]."),
])
def test_coerce_inputs_name_what_is_wrong(loaded, signature, inputs, message):
  with pytest.raises(input_checks.ServingError) as error:
    loaded.coerce_inputs(signature, inputs)
  assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
  assert error.value.message == message


def test_graph_errors_keep_their_status_code(loaded):
  with pytest.raises(input_checks.ServingError) as error:
    loaded.predict("predict_text", {"text": ["张" * 9000]})
  # The graph's assertion fails with InvalidArgumentError: same code here.
  assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
  assert error.value.message and "\n" not in error.value.message


def test_manager_loads_newer_versions_and_refuses_unknown_ones(served,
                                                               tmp_path):
  base = tmp_path / "export"
  manager = model_manager.ModelManager("ner", str(base))
  assert manager.load_latest() is None
  with pytest.raises(input_checks.ServingError,
                     match="No version of ner is served"):
    manager.get("ner")
  shutil.copytree(served["version_dir"], base / "2")
  (base / "5").mkdir()  # no saved_model.pb: not a version
  assert manager.load_latest() == 2
  first = manager.get("ner")
  assert (first.version, manager.get("ner", "2")) == (2, first)
  assert manager.load_latest() == 2 and manager.get("ner") is first
  for name, version, message in (
      ("other", None, "Servable not found for request: model 'other' (this "
                      "server has 'ner')."),
      ("ner", 3, "Servable not found for request: ner version 3 (serving "
                 "version 2).")):
    with pytest.raises(input_checks.ServingError) as error:
      manager.get(name, version)
    assert error.value.code == grpc.StatusCode.NOT_FOUND
    assert error.value.message == message
