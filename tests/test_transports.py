"""Transports: wire formats, retries with backoff, unreachable servers."""

import base64
import socket

import numpy as np
import pytest

from serving.client import transports
from trainer import schema
from serving.client.errors import PredictionError
from serving.server import saved_model_session


def test_rest_body_and_outputs_round_trip():
  inputs = {"input_ids": np.array([[2, 5, 3]], np.int32)}
  assert transports.build_rest_body(inputs, "serving_default") == {
      "signature_name": "serving_default",
      "inputs": {"input_ids": [[2, 5, 3]]}}
  body = transports.build_rest_body(
      {"examples": np.array([b"\xff\x00"], object)}, "predict_examples")
  assert body["inputs"]["examples"] == [
      {"b64": base64.b64encode(b"\xff\x00").decode()}]
  body = transports.build_rest_body(
      {"text": np.array(["北京".encode(), b"\xff"], object)}, "predict_text")
  assert body["inputs"]["text"] == ["北京", {"b64": "/w=="}]
  outputs = transports.parse_rest_outputs({"outputs": {
      "tags": [["O", "B-LOC"]], "label_ids": [[0, 1]], "scores": [[0.5, 1.0]]}})
  assert outputs["tags"].tolist() == [[b"O", b"B-LOC"]]
  assert outputs["label_ids"].tolist() == [[0, 1]]
  assert outputs["scores"].tolist() == [[0.5, 1.0]]
  with pytest.raises(PredictionError, match="no 'outputs'"):
    transports.parse_rest_outputs({"predictions": []})
  with pytest.raises(PredictionError, match="one unnamed output"):
    transports.parse_rest_outputs({"outputs": [[1]]})


def test_grpc_request_and_response_round_trip():
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  request = transports.build_predict_request(
      {"text": np.array([b"ab"], object)}, "ner", "predict_text", version=3)
  assert (request.model_spec.name, request.model_spec.signature_name,
          request.model_spec.version.value) == ("ner", "predict_text", 3)
  assert not transports.build_predict_request(
      {}, "ner", "serving_default").model_spec.HasField("version")
  response = predict_pb2.PredictResponse()
  response.outputs["text"].CopyFrom(request.inputs["text"])
  assert transports.parse_predict_response(response)["text"].tolist() == [
      b"ab"]


def test_rest_predict_url():
  assert transports.rest_predict_url("localhost:8501", "ner") == \
      "http://localhost:8501/v1/models/ner:predict"
  assert transports.rest_predict_url("https://h:1/", "ner", 3) == \
      "https://h:1/v1/models/ner/versions/3:predict"


def test_prediction_error_and_protocols():
  error = PredictionError("NOT_FOUND", "no model")
  assert (str(error), error.code, error.message) == (
      "NOT_FOUND: no model", "NOT_FOUND", "no model")
  transports.check_protocol("rest")
  with pytest.raises(ValueError,
                     match=r"protocol='http'; use one of \('grpc', 'rest'\)"):
    transports.make_transport("http", "localhost:1", "ner", 1.0, 0, 0.1)
  rest = transports.make_transport("rest", "localhost:1", "ner", 1.0, 0, 0.1)
  assert isinstance(rest, transports.RestTransport)
  assert rest.url == "http://localhost:1/v1/models/ner:predict"


def test_retries_then_gives_up_with_backoff(monkeypatch):
  sleeps = []
  monkeypatch.setattr(transports.time, "sleep", sleeps.append)
  calls = []

  def flaky():
    calls.append(1)
    if len(calls) < 3:
      raise PredictionError("UNAVAILABLE", "starting")
    return "ok"

  retryable = lambda error: error.code == "UNAVAILABLE"
  assert transports.with_retries(flaky, 3, 0.1, retryable) == "ok"
  assert sleeps == [0.1, 0.2]
  calls.clear()
  with pytest.raises(PredictionError, match="UNAVAILABLE"):
    transports.with_retries(flaky, 1, 0.1, retryable)
  assert len(calls) == 2

  def invalid():
    calls.append(1)
    raise PredictionError("INVALID_ARGUMENT", "bad")

  calls.clear()
  with pytest.raises(PredictionError, match="INVALID_ARGUMENT"):
    transports.with_retries(invalid, 5, 0.1, retryable)
  assert len(calls) == 1


def _closed_port():
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


@pytest.mark.parametrize("transport_class", [transports.GrpcTransport,
                                             transports.RestTransport])
def test_unreachable_server_is_unavailable_after_retries(transport_class):
  transport = transport_class(f"127.0.0.1:{_closed_port()}", "ner",
                              timeout_s=2.0, max_retries=2, backoff_s=0.01)
  with pytest.raises(PredictionError) as error:
    transport.predict("serving_default",
                      {"input_ids": np.zeros([1, 3], np.int32)})
  assert error.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
  transport.close()


def test_grpc_channel_uses_the_schema_message_limit(monkeypatch):
  import grpc  # pylint: disable=g-import-not-at-top
  seen = {}
  real_channel = grpc.insecure_channel

  def recording_channel(target, options=None):
    seen[target] = dict(options)
    return real_channel(target, options=options)

  monkeypatch.setattr(grpc, "insecure_channel", recording_channel)
  transports.GrpcTransport("127.0.0.1:1", "ner", 1.0, 0, 0.1).close()
  assert seen == {"127.0.0.1:1": {
      "grpc.max_send_message_length": schema.MAX_GRPC_MESSAGE_BYTES,
      "grpc.max_receive_message_length": schema.MAX_GRPC_MESSAGE_BYTES}}


# --- In process ------------------------------------------------------------


@pytest.fixture(scope="module")
def served():
  from tests import serving_fixtures  # pylint: disable=g-import-not-at-top
  return serving_fixtures.served_model()


def _ids(*rows):
  ids = np.array(rows, np.int32)
  return {"input_ids": ids, "input_mask": np.ones_like(ids),
          "segment_ids": np.zeros_like(ids)}


def test_thread_settings():
  assert saved_model_session.thread_settings("latency") == (1, 1)
  assert saved_model_session.thread_settings("throughput") == (0, 0)
  with pytest.raises(ValueError, match="use one of latency, throughput"):
    saved_model_session.thread_settings("fast")


@pytest.mark.parametrize("thread_mode", saved_model_session.THREAD_MODES)
def test_saved_model_transport_answers_as_the_eager_model(served, thread_mode):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  eager = tf.saved_model.load(served["version_dir"]).signatures
  requests = {"serving_default": _ids([2, 5, 6, 3], [2, 7, 3, 0]),
              "predict_text": {"text": np.array(
                  ["张三在北京工作。".encode(), "李四".encode()], object)}}
  transport = transports.SavedModelTransport(served["export_dir"],
                                             thread_mode)
  try:
    for signature, inputs in requests.items():
      got = transport.predict(signature, inputs)
      expected = eager[signature](**{key: tf.constant(value)
                                     for key, value in inputs.items()})
      assert sorted(got) == sorted(expected)
      for key, value in expected.items():
        if value.dtype.is_floating:
          np.testing.assert_allclose(got[key], value.numpy(), atol=1e-6)
        else:
          assert got[key].tolist() == value.numpy().tolist()
  finally:
    transport.close()
  # Latency mode runs each call in the caller's thread.
  options = saved_model_session.SessionSavedModel(
      served["version_dir"], *saved_model_session.thread_settings(thread_mode)
  ).run_options
  assert (options.inter_op_thread_pool if options else None) == (
      -1 if thread_mode == "latency" else None)


def test_saved_model_transport_errors_are_prediction_errors(served):
  transport = transports.SavedModelTransport(served["export_dir"], "latency")
  with pytest.raises(PredictionError) as unknown:
    transport.predict("classify", _ids([2, 3]))
  assert unknown.value.code == "INVALID_ARGUMENT"
  assert "'classify' not found; the export has ['predict_examples', " \
      "'predict_text', 'serving_default']" in unknown.value.message
  with pytest.raises(PredictionError, match="not \\['ids'\\]"):
    transport.predict("serving_default", {"ids": np.ones([1, 2], np.int32)})
  with pytest.raises(PredictionError) as out_of_range:
    transport.predict("serving_default", _ids([2, 5000, 3]))
  assert out_of_range.value.code == "INVALID_ARGUMENT"
  from tests import serving_fixtures  # pylint: disable=g-import-not-at-top
  vocab_size = serving_fixtures.model_limits()["vocab_size"]
  assert f"input_ids must be in [0, {vocab_size}) (vocab_size of the model); " \
      "found 5000 at row 0, position 1" in out_of_range.value.message
