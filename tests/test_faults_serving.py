"""Bad values reach no model: issue 13, serving items 9-11 (values, messages).

9. REST integers outside the dtype's range were wrapped (4294967306 served as
   id 10): now 400 naming the input and the value.
10. Ids outside the vocab, segment ids outside type_vocab_size, a mask not
    0/1 were served (or failed deep in the graph): the exported graph itself
    refuses them, so TF Serving does too, and good inputs get bit-identical
    outputs.
11. Clients read "Graph execution error:": now the reason itself; long texts
    and windows are refused before any TensorFlow work.

Size limits, the REST front end and memory are in test_faults_rest_front.py,
deleted versions and stale exports in test_faults_versions.py.
"""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.server import grpc_service
from serving.server import input_checks
from serving.server import rest_api
from tests import serving_fixtures
from trainer.export import exporter as export_lib
from trainer.data import labels as labels_lib
from trainer.model import heads as model_lib
from trainer.features import tokenization

TIMEOUT_S = 20.0
PREDICT = "/v1/models/ner:predict"
IDS_SPEC = tf.TensorSpec([None, None], tf.int32)


@pytest.fixture(scope="module")
def served():
  return serving_fixtures.served_model()


@pytest.fixture(scope="module")
def manager():
  return serving_fixtures.loaded_manager()


@pytest.fixture(scope="module")
def limits():
  return serving_fixtures.model_limits()


@pytest.fixture(scope="module")
def port(manager):
  with serving_fixtures.rest_server(manager) as bound:
    yield bound


@pytest.fixture(scope="module")
def stub(manager):
  server, bound = grpc_service.start_grpc_server(manager, "127.0.0.1", 0, 2)
  with grpc.insecure_channel(f"127.0.0.1:{bound}") as channel:
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
  server.stop(grace=1).wait(timeout=10)


def _ids_body(input_ids, input_mask=None, segment_ids=None):
  width = len(input_ids[0])
  return {"inputs": {
      "input_ids": input_ids,
      "input_mask": input_mask or [[1] * width] * len(input_ids),
      "segment_ids": segment_ids or [[0] * width] * len(input_ids)}}


def _out_of_range(key, allowed, value, row, position, count=1):
  return (f"{key} must be {allowed}; found {value} at row {row}, position "
          f"{position} (out-of-range values in the request: {count})")


# --- 9. Integers the dtype cannot hold --------------------------------------------


@pytest.mark.parametrize("value", [4294967306, 2**40, 2**31, -2**31 - 1,
                                   2**70])
def test_rest_refuses_integers_outside_int32(port, value):
  """Before: 4294967306 was served as id 10 and 2**40 as [PAD], status 200."""
  status, answer = serving_fixtures.http_post(
      port, PREDICT, _ids_body([[2, value, 3]]))
  assert (status, answer) == (400, {"error": (
      f"Input input_ids holds {value}, outside the int32 range "
      "[-2147483648, 2147483647].")})


@pytest.mark.parametrize("value,spec,message", [
    ([[2, 2**32 + 10]], IDS_SPEC, "Input x holds 4294967306, outside the "
                                  "int32 range [-2147483648, 2147483647]."),
    ([1e39], tf.TensorSpec([None], tf.float32),
     "Input x holds 1e+39, outside the float32 range"),
    ([[-2**63 - 1]], tf.TensorSpec([None, None], tf.int64),
     "Input x holds -9223372036854775809, outside the int64 range"),
])
def test_to_array_refuses_values_outside_the_dtype(value, spec, message):
  with pytest.raises(input_checks.ServingError) as error:
    input_checks.to_array("x", value, spec)
  assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
  assert error.value.message.startswith(message)


def test_to_array_keeps_every_value_the_dtype_holds():
  edges = [[-2**31, 2**31 - 1, 0]]
  assert input_checks.to_array("x", edges, IDS_SPEC).tolist() == edges
  floats = input_checks.to_array("x", [float("inf"), float("nan"), 2],
                                 tf.TensorSpec([None], tf.float32))
  assert np.isinf(floats[0]) and np.isnan(floats[1]) and floats[2] == 2.0


def test_grpc_refuses_int64_ids_for_an_int32_input(stub):
  """The proto can carry 4294967306 only as int64: refused by dtype."""
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "ner"
  ids = np.array([[2, 4294967306, 3]], np.int64)
  for key, value in (("input_ids", ids), ("input_mask", np.ones_like(ids)),
                     ("segment_ids", np.zeros_like(ids))):
    request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
  with pytest.raises(grpc.RpcError) as error:
    stub.Predict(request, timeout=TIMEOUT_S)
  assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert error.value.details() == ("Input input_ids must be int32 but int64 "
                                   "was given.")


# --- 10. Values the model cannot use, refused by the exported graph --------------


def _graph_cases(vocab_size, max_positions):
  ids = [[2, 5, 3]]
  return [
      ("id = vocab_size", {"input_ids": [[2, vocab_size, 3]]},
       _out_of_range("input_ids", f"in [0, {vocab_size}) (vocab_size of the "
                     "model)", vocab_size, 0, 1)),
      ("negative ids", {"input_ids": [[2, 5, 3], [2, -1, -7]]},
       _out_of_range("input_ids", f"in [0, {vocab_size}) (vocab_size of the "
                     "model)", -1, 1, 1, count=2)),
      ("segment id 2", {"input_ids": ids, "segment_ids": [[0, 2, 0]]},
       _out_of_range("segment_ids", "in [0, 2) (type_vocab_size of the model)",
                     2, 0, 1)),
      ("mask 7", {"input_ids": ids, "input_mask": [[1, 7, 1]]},
       _out_of_range("input_mask", "0 or 1", 7, 0, 1)),
      ("mask -1", {"input_ids": ids, "input_mask": [[1, 1, -1]]},
       _out_of_range("input_mask", "0 or 1", -1, 0, 2)),
      ("too many positions", {"input_ids": [[2] * (max_positions + 1)]},
       f"input_ids has {max_positions + 1} positions; this model takes at "
       f"most {max_positions} (max_position_embeddings)"),
      ("mask shape", {"input_ids": ids, "input_mask": [[1, 1]]},
       "input_mask has shape [1 2] but input_ids has [1 3]; input_ids, "
       "input_mask, segment_ids take one shape [batch, positions]"),
  ]


def _window(overrides):
  ids = overrides["input_ids"]
  inputs = {"input_ids": ids, "input_mask": np.ones_like(ids),
            "segment_ids": np.zeros_like(ids)}
  inputs.update(overrides)
  return {key: tf.constant(value, tf.int32) for key, value in inputs.items()}


def test_exported_graph_refuses_values_the_model_cannot_use(served, limits):
  """What TF Serving runs: the SavedModel's own signature, no dev server.

  Before: segment id 2 and mask 7 were answered; out-of-range ids failed with
  "indices[0,1,0] = 69 is not in [0, 69)" inside the embedding lookup.
  """
  signature = tf.saved_model.load(
      served["version_dir"]).signatures["serving_default"]
  for name, overrides, message in _graph_cases(
      limits["vocab_size"], limits["max_position_embeddings"]):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
      signature(**_window(overrides))
    assert f"assertion failed: [{message}]" in error.value.message, name
    assert input_checks.tf_error_reason(error.value.message) == message, name


def test_predict_examples_checks_int64_values_before_the_cast(served, limits):
  """2**32 + 10 in a tf.Example was cast to int32 10 and served."""
  example = tf.train.Example(features=tf.train.Features(feature={
      key: tf.train.Feature(int64_list=tf.train.Int64List(value=values))
      for key, values in (("input_ids", [2, 2**32 + 10, 3]),
                          ("input_mask", [1, 1, 1]),
                          ("segment_ids", [0, 0, 0]))}))
  signature = tf.saved_model.load(
      served["version_dir"]).signatures["predict_examples"]
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    signature(examples=tf.constant([example.SerializeToString()]))
  vocab_size = limits["vocab_size"]
  assert input_checks.tf_error_reason(error.value.message) == _out_of_range(
      "input_ids", f"in [0, {vocab_size}) (vocab_size of the model)",
      2**32 + 10, 0, 1)


def _unchecked_outputs(served, inputs):
  """model.build_outputs on the checkpoint, without the serving checks."""
  bert_config = export_lib.modeling.BertConfig.from_json_file(
      served["bert_config_file"])
  labels = labels_lib.read_labels_file(served["labels_file"])
  tokenizer = tokenization.NerTokenizer(served["vocab_file"], True)
  with tf.Graph().as_default():
    placeholders = {key: tf.compat.v1.placeholder(tf.int32, [None, None])
                    for key in inputs}
    outputs = model_lib.build_outputs(
        bert_config, labels, placeholders,
        head=export_lib.head_config(None, tokenizer.vocab))
    with tf.compat.v1.Session() as session:
      tf.compat.v1.train.Saver().restore(
          session, tf.train.latest_checkpoint(served["output_dir"]))
      return session.run(outputs, {placeholders[key]: value
                                   for key, value in inputs.items()})


def test_checks_leave_good_outputs_bit_identical(served, limits):
  rng = np.random.RandomState(0)
  ids = rng.randint(5, limits["vocab_size"], size=[3, 12]).astype(np.int32)
  ids[:, 0], ids[:, -1] = 2, 3
  mask = np.ones_like(ids)
  mask[2, 8:] = 0
  inputs = {"input_ids": ids, "input_mask": mask,
            "segment_ids": np.zeros_like(ids)}
  served_outputs = tf.saved_model.load(
      served["version_dir"]).signatures["serving_default"](
          **{key: tf.constant(value) for key, value in inputs.items()})
  expected = _unchecked_outputs(served, inputs)
  assert sorted(expected) == sorted(served_outputs)
  for key, value in expected.items():
    assert np.array_equal(served_outputs[key].numpy(), value), key


# --- 11. The reason, not "Graph execution error:" -------------------------------


def test_rest_and_grpc_answer_the_graph_reason(port, stub, limits):
  """Before: {"error": "Graph execution error:"}."""
  vocab_size = limits["vocab_size"]
  message = _out_of_range("input_ids", f"in [0, {vocab_size}) (vocab_size of "
                          "the model)", 5000, 0, 1)
  assert serving_fixtures.http_post(port, PREDICT, _ids_body(
      [[2, 5000, 3]])) == (400, {"error": message})
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "ner"
  for key, value in _ids_body([[2, 5000, 3]])["inputs"].items():
    request.inputs[key].CopyFrom(tf.make_tensor_proto(np.array(value,
                                                               np.int32)))
  with pytest.raises(grpc.RpcError) as error:
    stub.Predict(request, timeout=TIMEOUT_S)
  assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert error.value.details() == message


TF_215_MESSAGE = (
    "Graph execution error:\n\nDetected at node serving_default/check_input_"
    "mask/Assert defined at (most recent call last):\n  File \"/x/run.py\", "
    "line 3, in <module>\n    main()\n\nassertion failed: [input_mask must be "
    "0 or 1; found 7 at row 0, position 1 (out-of-range values in the "
    "request: 1)]\n\t [[{{node serving_default/check_input_mask/Assert}}]] "
    "[Op:__inference_pruned_8121]")


@pytest.mark.parametrize("message,reason", [
    (TF_215_MESSAGE, "input_mask must be 0 or 1; found 7 at row 0, position "
                     "1 (out-of-range values in the request: 1)"),
    ("Graph execution error:\n\nDetected at node lookup defined at (most "
     "recent call last):\n  File \"x.py\", line 3, in <module>\n\n"
     "indices[0,1,0] = 5000 is not in [0, 69)\n\t [[{{node lookup}}]] "
     "[Op:__inference_pruned_7293]",
     "indices[0,1,0] = 5000 is not in [0, 69)"),
    # An assertion with several data items is kept whole.
    ("assertion failed: [Condition x <= y did not hold] [65] [64]",
     "assertion failed: [Condition x <= y did not hold] [65] [64]"),
    ("Invalid formatting on input string", "Invalid formatting on input "
                                           "string"),
])
def test_tf_error_reason_drops_the_framing(message, reason):
  assert input_checks.tf_error_reason(message) == reason


def test_long_texts_are_refused_before_any_tensorflow_work(
    manager, port, monkeypatch):
  """The dev server answers from ner_config.json's limits, not the graph."""
  loaded = manager.get("ner")

  def no_graph(**unused):
    raise AssertionError("the graph ran")

  for name in loaded.signatures:
    monkeypatch.setitem(loaded.signatures, name, no_graph)
  too_long = ("predict_text: text row 1 has 8193 characters; "
              "max_text_chars=8192 allows at most 8192 characters; split it, "
              "or send windows to serving_default (the client does)")
  assert serving_fixtures.http_post(port, PREDICT, {
      "signature_name": "predict_text",
      "inputs": ["张三", "张" * 8193]}) == (400, {"error": too_long})
  huge = serving_fixtures.http_post(port, PREDICT, {
      "signature_name": "predict_text", "inputs": ["x" * 5_000_000]})
  assert huge == (400, {"error": (
      "predict_text: text row 0 has 5000000 bytes; max_text_chars=8192 "
      "allows at most 32768 bytes; split it, or send windows to "
      "serving_default (the client does)")})
  assert serving_fixtures.http_post(port, PREDICT, {
      "signature_name": "predict_text", "inputs": [{"b64": "QUL/"}]}) == (
          400, {"error": "Input text row 0 is not UTF-8: byte 2 is "
                         "b'\\xff'."})
  positions = serving_fixtures.model_limits()["max_position_embeddings"]
  assert serving_fixtures.http_post(port, PREDICT, _ids_body(
      [[2] * 100_000])) == (400, {"error": (
          f"Input input_ids row 0 has 100000 positions; this model takes at "
          f"most {positions} (max_position_embeddings).")})


def test_the_graph_says_what_the_dev_server_says(served):
  """TF Serving (no pre-check) answers long texts with the same words."""
  signature = tf.saved_model.load(
      served["version_dir"]).signatures["predict_text"]
  for texts, message in (
      (["张三", "张" * 8193], "predict_text: text row 1 has 8193 characters; "
                             "max_text_chars=8192 allows at most 8192 "
                             "characters"),
      (["x" * 40000], "predict_text: text row 0 has 40000 bytes; "
                      "max_text_chars=8192 allows at most 32768 bytes")):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
      signature(text=tf.constant(texts))
    assert input_checks.tf_error_reason(error.value.message) == (
        message + "; split it, or send windows to serving_default (the "
                  "client does)")


def test_rest_predict_still_serves_good_requests(manager):
  answer = rest_api.rest_predict(manager.get("ner"), _ids_body([[2, 5, 3]]))
  assert len(answer["outputs"]["tags"][0]) == 3
