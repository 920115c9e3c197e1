"""Bounds from declared sizes, and errors as clients read them: issue 24, 1 and 3.

1. A 129-byte PredictRequest declaring [16384, 16384] for each input (one
   `int_val` each) drove the server to a 4.1 GB peak for 11 s; [2^20, 2^20]
   answered UNKNOWN "Unable to allocate 4.00 TiB". 100,000 sentences in one
   REST body (5.2 MB) took the server from 1.5 to 4.8 GB. Now rows
   (--max_batch_rows, default 32), positions per row and elements per tensor are checked
   from the declared shapes and list lengths before anything is allocated.
3. JSON nested 10,000 deep, a lone surrogate sent to /demo/entities and
   `signature_name` given as a list were 500s; unexpected errors sent their
   exception text; errors named absolute export paths. Now 400s, a 500 with a
   request id (the detail in the log alone), and no paths.
"""

import logging
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.demo import endpoint as demo
from serving.server import grpc_service
from serving.server import input_checks
from serving.server import model_manager
from serving.server import request_bounds
from tests import serving_fixtures

TIMEOUT_S = 20.0
PREDICT = "/v1/models/ner:predict"
ROWS_REFUSED = ("Input {key} has {rows} rows; this server takes at most "
                "{limit} per request (--max_batch_rows). Send smaller batches.")


@pytest.fixture(scope="module")
def manager():
  return serving_fixtures.loaded_manager()


@pytest.fixture(scope="module")
def port(manager):
  with serving_fixtures.rest_server(manager, mount=demo) as bound:
    yield bound


@pytest.fixture(scope="module")
def stub(manager):
  server, bound = grpc_service.start_grpc_server(manager, "127.0.0.1", 0, 2)
  with grpc.insecure_channel(f"127.0.0.1:{bound}") as channel:
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
  server.stop(grace=1).wait(timeout=10)


def declared_request(dims):
  """The probe's request: each input declares `dims` and holds one value."""
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "ner"
  request.model_spec.signature_name = "serving_default"
  for key in ("input_ids", "input_mask", "segment_ids"):
    proto = tensor_pb2.TensorProto(dtype=tf.int32.as_datatype_enum)
    for size in dims:
      proto.tensor_shape.dim.add(size=size)
    proto.int_val.append(1)
    request.inputs[key].CopyFrom(proto)
  return request


def _grpc_error(stub, request):
  with pytest.raises(grpc.RpcError) as error:
    stub.Predict(request, timeout=TIMEOUT_S)
  return error.value.code(), error.value.details()


# --- 1. Bounds before allocation ---------------------------------------------------


def test_the_probe_request_is_129_bytes():
  assert declared_request([16384, 16384]).ByteSize() == 129


@pytest.mark.parametrize("dims,message", [
    ([16384, 16384],
     ROWS_REFUSED.format(key="input_ids", rows=16384, limit=32)),
    ([2 ** 20, 2 ** 20],
     ROWS_REFUSED.format(key="input_ids", rows=2 ** 20, limit=32)),
    ([1, 100_000], "Input input_ids row 0 has 100000 positions; this model "
                   "takes at most 64 (max_position_embeddings)."),
    ([2, 3, 4], "Input input_ids must have rank 2 but declares shape "
                "[2, 3, 4]."),
])
def test_grpc_refuses_declared_shapes_before_reading_them(
    stub, monkeypatch, dims, message):
  def no_allocation(proto):
    raise AssertionError(f"tf.make_ndarray ran for {proto.tensor_shape}")

  monkeypatch.setattr(tf, "make_ndarray", no_allocation)
  assert _grpc_error(stub, declared_request(dims)) == (
      grpc.StatusCode.INVALID_ARGUMENT, message)


@pytest.mark.parametrize("dims,rank,message", [
    ([65], 1, ROWS_REFUSED.format(key="x", rows=65, limit=64)),
    ([64, 65], 2, "Input x row 0 has 65 positions; this model takes at most "
                  "64 (max_position_embeddings)."),
    ([64, 64, 2], None, "Input x has 8192 elements; one request may hold at "
                        "most 4096 (64 rows of 64 positions: --max_batch_rows"
                        " x max_position_embeddings). Send smaller batches."),
    ([-1, 3], 2, "Input x declares shape [-1, 3]; sizes must be >= 0."),
])
def test_declared_shape_bounds(dims, rank, message):
  bounds = request_bounds.RequestBounds(64, 64)
  with pytest.raises(input_checks.ServingError) as error:
    bounds.check_declared_shape("x", dims, rank)
  assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
  assert error.value.message == message
  bounds.check_declared_shape("x", [64, 64], 2)  # the largest admitted


def test_max_batch_rows_comes_from_the_manager(manager):
  assert manager.get("ner").bounds == request_bounds.RequestBounds(
      32, 64, 8192)
  assert request_bounds.bounds_for({}, 8) == request_bounds.RequestBounds(
      8, request_bounds.FALLBACK_MAX_POSITIONS)


def test_rest_refuses_more_rows_than_max_batch_rows(port):
  """Before: 100,000 sentences were all run (1.5 -> 4.8 GB, never freed)."""
  status, answer = serving_fixtures.http_post(port, PREDICT, {
      "signature_name": "predict_text", "instances": ["张三在北京。"] * 100_000})
  assert (status, answer) == (400, {"error": ROWS_REFUSED.format(
      key="instances", rows=100_000, limit=32)})
  ids = {"input_ids": [[2, 5, 3]] * 33, "input_mask": [[1, 1, 1]] * 33,
         "segment_ids": [[0, 0, 0]] * 33}
  assert serving_fixtures.http_post(port, PREDICT, {"inputs": ids}) == (
      400, {"error": ROWS_REFUSED.format(key="input_ids", rows=33, limit=32)})
  assert serving_fixtures.http_post(port, PREDICT, {
      "signature_name": "predict_text", "instances": ["张三"] * 32})[0] == 200


def test_predict_text_characters_share_the_element_bound(port):
  """32 texts of 300 characters: more positions than a full batch holds."""
  status, answer = serving_fixtures.http_post(port, PREDICT, {
      "signature_name": "predict_text", "instances": ["张" * 300] * 32})
  assert (status, answer) == (400, {"error": (
      "Input text has 9600 characters in all; one request may hold at most "
      "8192 (the larger of --max_batch_rows x max_position_embeddings = 2048 "
      "and max_text_chars = 8192). Send fewer texts per request.")})
  # One text of max_text_chars always fits.
  assert serving_fixtures.http_post(port, PREDICT, {
      "signature_name": "predict_text", "instances": ["张" * 8192]})[0] == 200


def test_examples_are_counted_before_the_graph_pads_them(stub):
  """One long tf.Example would pad every row of the batch to its length."""
  long_example = tf.train.Example(features=tf.train.Features(feature={
      key: tf.train.Feature(int64_list=tf.train.Int64List(value=[1] * 70))
      for key in ("input_ids", "input_mask", "segment_ids")}))
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "ner"
  request.model_spec.signature_name = "predict_examples"
  request.inputs["examples"].CopyFrom(tf.make_tensor_proto(
      [b"", long_example.SerializeToString()]))
  assert _grpc_error(stub, request) == (
      grpc.StatusCode.INVALID_ARGUMENT,
      "Input examples row 1 has 70 positions; this model takes at most 64 "
      "(max_position_embeddings).")
  request.inputs["examples"].CopyFrom(tf.make_tensor_proto([b"\xff\xff"]))
  assert _grpc_error(stub, request) == (
      grpc.StatusCode.INVALID_ARGUMENT,
      "Input examples row 0 is not a serialized tf.Example.")


@pytest.mark.slow  # a server process of its own; about 20 s
def test_the_129_byte_request_is_refused_fast_with_memory_flat(tmp_path):
  """Before: 4.1 GB peak for 11 s. Now under 100 ms, peak memory unchanged."""
  process, grpc_port, _ = serving_fixtures.start_server_process(
      serving_fixtures.served_model()["export_dir"], tmp_path / "server.log")
  try:
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      probe = declared_request([16384, 16384])
      _grpc_error(stub, probe)  # first use: channel and handler set up
      peak_before = serving_fixtures.memory_mb(process.pid, "VmHWM")
      for dims in ([16384, 16384], [2 ** 20, 2 ** 20], [64, 2 ** 20]):
        started = time.monotonic()
        code, _ = _grpc_error(stub, declared_request(dims))
        elapsed_s = time.monotonic() - started
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert elapsed_s < 0.1, (dims, elapsed_s)
      peak_after = serving_fixtures.memory_mb(process.pid, "VmHWM")
      assert peak_after - peak_before < 20, (peak_before, peak_after)
  finally:
    process.terminate()
    process.wait(timeout=30)


# --- 3. Errors as clients read them -------------------------------------------------


def test_deep_json_is_a_400(port):
  deep = b"[" * 10_000 + b"]" * 10_000
  for path in (PREDICT, demo.ENTITIES_PATH):
    assert serving_fixtures.http_post(port, path, deep) == (400, {
        "error": "The body nests JSON deeper than 64 levels; requests nest at "
                 "most 64."})


def test_a_lone_surrogate_is_a_400(port):
  body = b'{"text": "\\ud800 in Beijing"}'
  assert serving_fixtures.http_post(port, demo.ENTITIES_PATH, body) == (400, {
      "error": "The text holds a lone surrogate \\ud800 at character 0, which "
               "is not text; send UTF-8."})
  status, answer = serving_fixtures.http_post(port, PREDICT, (
      b'{"signature_name": "predict_text", "instances": ["ab\\udfff"]}'))
  assert status == 400
  assert "lone surrogate \\udfff at character 2" in answer["error"]


def test_signature_name_must_be_a_string(port):
  assert serving_fixtures.http_post(port, PREDICT, {
      "signature_name": ["predict_text"], "instances": ["张三"]}) == (400, {
          "error": "\"signature_name\" must be a string, not "
                   "[\"predict_text\"]; this model has predict_examples, "
                   "predict_text, serving_default."})


def test_unexpected_errors_are_500s_with_a_request_id(
    manager, port, stub, monkeypatch, caplog):
  loaded = manager.get("ner")

  def broken(**unused):
    raise RuntimeError("secret detail at /srv/models/ner/1")

  monkeypatch.setitem(loaded.signatures, "predict_text", broken)
  with caplog.at_level(logging.ERROR):
    status, answer = serving_fixtures.http_post(port, PREDICT, {
        "signature_name": "predict_text", "instances": ["张三"]})
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ner"
    request.model_spec.signature_name = "predict_text"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto([b"x"]))
    code, details = _grpc_error(stub, request)
  assert status == 500 and code == grpc.StatusCode.INTERNAL
  for message in (answer["error"], details):
    assert "secret" not in message and "/srv" not in message
    request_id = message.split("request id ")[1].split(")")[0]
    assert message == input_checks.internal_error_message(request_id)
    assert len(request_id) == 16
    assert any(request_id in record.getMessage()
               and "secret detail" in record.exc_text
               for record in caplog.records if record.exc_text)


def test_answers_name_no_filesystem_paths(tmp_path):
  base = tmp_path / "models" / "ner"
  empty = model_manager.ModelManager("ner", str(base))
  empty.load_latest()
  with pytest.raises(input_checks.ServingError) as error:
    empty.get("ner")
  assert error.value.message == (
      "No version of ner is served (no numbered folder with saved_model.pb "
      "has loaded; the server log says why).")
  with pytest.raises(input_checks.ServingError) as error:
    empty.version_states("ner")
  assert error.value.message == ("Could not find any versions of model ner "
                                 "(none loaded).")
