"""The development server's gRPC API, with real stubs on a loopback port."""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.server import grpc_service
from tests import serving_fixtures
from trainer import schema
from serving.server import input_checks

TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def manager():
  return serving_fixtures.loaded_manager()


@pytest.fixture(scope="module")
def channel(manager):
  server, port = grpc_service.start_grpc_server(manager, "127.0.0.1", 0, 4)
  with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
    yield opened
  server.stop(grace=1).wait(timeout=10)


def _ids_request(seq_len=5, signature="serving_default", model="ner",
                 dtype=np.int32, **overrides):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model
  request.model_spec.signature_name = signature
  inputs = {key: np.ones([2, seq_len], dtype)
            for key in ("input_ids", "input_mask", "segment_ids")}
  inputs.update(overrides)
  for key, value in inputs.items():
    if value is not None:
      request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
  return request


def _text_request(texts):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "ner"
  request.model_spec.signature_name = "predict_text"
  request.inputs["text"].CopyFrom(tf.make_tensor_proto(
      np.array([t.encode() for t in texts], object)))
  return request


def _versioned(request, version):
  request.model_spec.version.value = version
  return request


def test_predict_response_fills_the_model_spec_and_filters(manager):
  request = _text_request(["张三"])
  response = grpc_service.predict_response(manager, request)
  assert (response.model_spec.name, response.model_spec.version.value,
          response.model_spec.signature_name) == ("ner", 1, "predict_text")
  assert sorted(response.outputs) == ["label_ids", "lengths", "scores", "tags"]
  request.output_filter.append("lengths")
  filtered = grpc_service.predict_response(manager, request)
  assert list(filtered.outputs) == ["lengths"]
  assert tf.make_ndarray(filtered.outputs["lengths"]).tolist() == [2]
  request.output_filter[:] = ["logits"]
  with pytest.raises(input_checks.ServingError,
                     match="output_filter names 'logits'; outputs are "
                           r"\['label_ids', 'lengths', 'scores', 'tags'\]"):
    grpc_service.predict_response(manager, request)
  # No signature name: serving_default, as TF Serving does.
  default = grpc_service.predict_response(manager,
                                          _ids_request(signature=""))
  assert default.model_spec.signature_name == schema.SERVING_DEFAULT_SIGNATURE


def test_model_status_and_metadata(channel):
  status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
      get_model_status_pb2.GetModelStatusRequest(
          model_spec={"name": "ner"}), timeout=TIMEOUT_S)
  assert [(s.version, s.state) for s in status.model_version_status] == [
      (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
  stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  request = get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec={"name": "ner"}, metadata_field=["signature_def"])
  metadata = stub.GetModelMetadata(request, timeout=TIMEOUT_S)
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  metadata.metadata["signature_def"].Unpack(signature_map)
  assert sorted(signature_map.signature_def) == [
      "predict_examples", "predict_text", "serving_default"]
  request.metadata_field[:] = ["labels"]
  with pytest.raises(grpc.RpcError) as error:
    stub.GetModelMetadata(request, timeout=TIMEOUT_S)
  assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert error.value.details() == (
      "metadata_field must be ['signature_def']; got ['labels'].")


GRPC_BAD_REQUESTS = [
    ("unknown model", _ids_request(model="nope"), grpc.StatusCode.NOT_FOUND),
    ("unknown version", _versioned(_ids_request(), 9),
     grpc.StatusCode.NOT_FOUND),
    ("unknown signature", _ids_request(signature="classify"),
     grpc.StatusCode.INVALID_ARGUMENT),
    ("missing input", _ids_request(input_mask=None),
     grpc.StatusCode.INVALID_ARGUMENT),
    ("extra input", _ids_request(label_ids=np.ones([2, 5], np.int32)),
     grpc.StatusCode.INVALID_ARGUMENT),
    ("wrong dtype", _ids_request(dtype=np.float32),
     grpc.StatusCode.INVALID_ARGUMENT),
    ("mismatched shapes", _ids_request(input_mask=np.ones([2, 4], np.int32)),
     grpc.StatusCode.INVALID_ARGUMENT),
    ("wrong rank", _ids_request(input_ids=np.ones([2], np.int32)),
     grpc.StatusCode.INVALID_ARGUMENT),
    ("empty batch", _ids_request(input_ids=np.ones([0, 5], np.int32),
                                 input_mask=np.ones([0, 5], np.int32),
                                 segment_ids=np.ones([0, 5], np.int32)),
     grpc.StatusCode.INVALID_ARGUMENT),
    ("too long", _ids_request(seq_len=65), grpc.StatusCode.INVALID_ARGUMENT),
    ("text too long", _text_request(["张" * 9000]),
     grpc.StatusCode.INVALID_ARGUMENT),
]


@pytest.mark.parametrize("name,request_proto,code", GRPC_BAD_REQUESTS,
                         ids=[case[0] for case in GRPC_BAD_REQUESTS])
def test_grpc_bad_request_then_good_request(channel, name, request_proto,
                                            code):
  stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  with pytest.raises(grpc.RpcError) as error:
    stub.Predict(request_proto, timeout=TIMEOUT_S)
  assert error.value.code() == code, (name, error.value.details())
  assert error.value.details()
  good = stub.Predict(_ids_request(), timeout=TIMEOUT_S)
  assert tf.make_ndarray(good.outputs["tags"]).shape == (2, 5)
  assert good.model_spec.version.value == 1


def test_messages_over_4_mib_are_received(channel):
  """The schema's message limit, not gRPC's 4 MiB default, bounds requests."""
  stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  # 5 MB of ids: received whole, then refused by --max_batch_rows (over
  # gRPC's default limit it would be RESOURCE_EXHAUSTED, unread).
  request = _ids_request(input_ids=np.ones([20000, 64], np.int32),
                         input_mask=np.ones([1, 64], np.int32),
                         segment_ids=np.ones([1, 64], np.int32))
  assert request.ByteSize() > 4 * 1024 * 1024
  with pytest.raises(grpc.RpcError) as error:
    stub.Predict(request, timeout=TIMEOUT_S)
  assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert error.value.details() == (
      "Input input_ids has 20000 rows; this server takes at most 32 per "
      "request (--max_batch_rows). Send smaller batches.")
