"""End to end: local PredictionService server, real stubs, REST, the client."""

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import client
from serving import local_server
from tests import serving_fixtures

TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def served():
  return serving_fixtures.served_model()


@pytest.fixture(scope="module")
def server(served):
  with local_server.LocalModelServer("ner", served["export_dir"]) as running:
    yield running


@pytest.fixture(scope="module")
def channel(server):
  with grpc.insecure_channel("127.0.0.1:%d" % server.grpc_port) as opened:
    yield opened


def _same_records(got, expected):
  assert got["tokens"] == expected["tokens"]
  assert got["tags"] == expected["tags"]
  np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-5)
  strip = lambda entities: [{k: v for k, v in e.items() if k != "score"}
                            for e in entities]
  assert strip(got["entities"]) == strip(expected["entities"])
  np.testing.assert_allclose([e["score"] for e in got["entities"]],
                             [e["score"] for e in expected["entities"]],
                             atol=1e-5)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
@pytest.mark.parametrize("signature", ["predict_examples", "serving_default",
                                      "predict_text"])
def test_client_matches_run_ner_predictions(served, server, protocol,
                                            signature):
  """Texts in, entities out: identical to predictions.jsonl (parity)."""
  port = server.grpc_port if protocol == "grpc" else server.rest_port
  texts = (serving_fixtures.CJK_ONLY_PREDICT if signature == "predict_text"
           else serving_fixtures.PREDICT)
  with client.NerClient("127.0.0.1:%d" % port, "ner",
                        export_dir=served["export_dir"], protocol=protocol,
                        signature=signature, timeout_s=TIMEOUT_S,
                        batch_size=3) as ner:
    records = ner.predict_records(texts)
    entities = ner.predict(texts)
  assert len(records) == len(texts)
  for record, expected in zip(records, served["records"]):
    _same_records(record, expected)
  assert any(entities)
  for found, expected in zip(entities, served["records"]):
    assert [(e["type"], e["text"], e["start"], e["end"]) for e in found] == [
        (e["type"], e["text"], e["char_start"], e["char_end"])
        for e in expected["entities"]]


def test_model_status_and_metadata(server, channel):
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

  base = "http://127.0.0.1:%d/v1/models/ner" % server.rest_port
  with urllib.request.urlopen(base, timeout=TIMEOUT_S) as reply:
    assert json.load(reply) == {"model_version_status": [{
        "version": "1", "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""}}]}
  with urllib.request.urlopen(base + "/metadata", timeout=TIMEOUT_S) as reply:
    assert "predict_text" in json.load(reply)["metadata"]["signature_def"][
        "signature_def"]


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


def _post(server, path, body):
  data = body if isinstance(body, bytes) else json.dumps(body).encode()
  request = urllib.request.Request(
      "http://127.0.0.1:%d%s" % (server.rest_port, path), data=data,
      headers={"Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
      return reply.status, json.load(reply)
  except urllib.error.HTTPError as error:
    return error.code, json.load(error)


IDS = [[2, 5, 3]]
REST_BAD_REQUESTS = [
    ("unknown model", "/v1/models/nope:predict", {"inputs": {}}, 404),
    ("unknown version", "/v1/models/ner/versions/9:predict", {"inputs": {}},
     404),
    ("bad path", "/v1/models/ner:explain", {"inputs": {}}, 404),
    ("not json", "/v1/models/ner:predict", b"{", 400),
    ("unknown signature", "/v1/models/ner:predict",
     {"signature_name": "classify", "inputs": {"input_ids": IDS}}, 400),
    ("missing input", "/v1/models/ner:predict",
     {"inputs": {"input_ids": IDS, "input_mask": IDS}}, 400),
    ("wrong dtype", "/v1/models/ner:predict",
     {"inputs": {"input_ids": [["a", "b"]], "input_mask": IDS,
                 "segment_ids": IDS}}, 400),
    ("float for int", "/v1/models/ner:predict",
     {"inputs": {"input_ids": [[2.5, 5, 3]], "input_mask": IDS,
                 "segment_ids": IDS}}, 400),
    ("ragged", "/v1/models/ner:predict",
     {"inputs": {"input_ids": [[2, 5], [2]], "input_mask": IDS,
                 "segment_ids": IDS}}, 400),
    ("empty batch", "/v1/models/ner:predict", {"instances": []}, 400),
    ("both formats", "/v1/models/ner:predict",
     {"instances": [1], "inputs": {}}, 400),
    ("too long", "/v1/models/ner:predict",
     {"signature_name": "predict_text", "inputs": ["张" * 9000]}, 400),
]


@pytest.mark.parametrize("name,path,body,status", REST_BAD_REQUESTS,
                         ids=[case[0] for case in REST_BAD_REQUESTS])
def test_rest_bad_request_then_good_request(server, name, path, body, status):
  code, answer = _post(server, path, body)
  assert code == status, (name, answer)
  assert set(answer) == {"error"} and answer["error"]
  code, answer = _post(server, "/v1/models/ner:predict", {
      "signature_name": "predict_text", "instances": ["张三在北京工作。"]})
  assert code == 200
  assert len(answer["predictions"]) == 1
  assert answer["predictions"][0]["lengths"] == 8


def test_rest_row_and_columnar_formats_agree(server):
  rows = [{"input_ids": [2, 5, 3], "input_mask": [1, 1, 1],
           "segment_ids": [0, 0, 0]}]
  code, by_rows = _post(server, "/v1/models/ner/versions/1:predict",
                        {"instances": rows})
  assert code == 200
  code, by_columns = _post(server, "/v1/models/ner:predict", {"inputs": {
      "input_ids": [[2, 5, 3]], "input_mask": [[1, 1, 1]],
      "segment_ids": [[0, 0, 0]]}})
  assert code == 200
  assert by_rows["predictions"][0]["tags"] == by_columns["outputs"]["tags"][0]
  assert sorted(by_columns["outputs"]) == ["label_ids", "scores", "tags"]


def test_concurrent_requests_have_no_errors(served, server):
  """8 threads x 50 requests, gRPC and REST mixed, bounded by a deadline."""
  errors, answers = [], []
  clients = [client.NerClient(
      "127.0.0.1:%d" % (server.grpc_port if i % 2 == 0 else server.rest_port),
      export_dir=served["export_dir"], protocol="grpc" if i % 2 == 0 else
      "rest", timeout_s=TIMEOUT_S) for i in range(8)]
  expected = served["records"][0]["tags"]

  def work(ner):
    try:
      for _ in range(50):
        answers.append(ner.predict_records([serving_fixtures.PREDICT[0]])[0]
                       ["tags"] == expected)
    except Exception as error:  # pylint: disable=broad-except
      errors.append(error)

  threads = [threading.Thread(target=work, args=(ner,)) for ner in clients]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join(timeout=120)
  assert not any(thread.is_alive() for thread in threads)
  for ner in clients:
    ner.close()
  assert errors == []
  assert answers == [True] * 400


def test_new_version_is_served_without_restart(served, tmp_path):
  base = tmp_path / "export"
  base.mkdir()
  shutil.copytree(served["version_dir"], base / "1")
  with local_server.LocalModelServer("ner", str(base), rest_api_port=None,
                                     poll_seconds=0.1) as running:
    assert running.rest_port is None
    # A half-written (hidden) folder is ignored; the rename publishes it.
    shutil.copytree(served["version_dir"], base / ".tmp-export-x")
    os.rename(base / ".tmp-export-x", base / "2")
    deadline = time.time() + 60
    with grpc.insecure_channel("127.0.0.1:%d" % running.grpc_port) as channel:
      stub = model_service_pb2_grpc.ModelServiceStub(channel)
      version = None
      while time.time() < deadline and version != 2:
        time.sleep(0.1)
        status = stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
            model_spec={"name": "ner"}), timeout=TIMEOUT_S)
        version = status.model_version_status[0].version
      assert version == 2
      response = prediction_service_pb2_grpc.PredictionServiceStub(
          channel).Predict(_ids_request(), timeout=TIMEOUT_S)
      assert response.model_spec.version.value == 2


def test_client_cli_prints_json_lines(served, server, capsys):
  status = client.main([
      "--server", "127.0.0.1:%d" % server.grpc_port, "--model_name", "ner",
      "--export_dir", served["export_dir"], "--text",
      serving_fixtures.PREDICT[0], "--text", serving_fixtures.PREDICT[1]])
  assert status == 0
  lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  assert [line["text"] for line in lines] == serving_fixtures.PREDICT[:2]
  assert [[(e["type"], e["start"], e["end"]) for e in line["entities"]]
          for line in lines] == [
              [(e["type"], e["char_start"], e["char_end"])
               for e in record["entities"]]
              for record in served["records"][:2]]
  status = client.main(["--server", "127.0.0.1:%d" % server.grpc_port,
                        "--model_name", "other", "--signature",
                        "predict_text", "--text", "x"])
  assert status == 1
  assert "NOT_FOUND" in capsys.readouterr().err


def test_server_flags_match_tensorflow_model_server():
  args = local_server.parse_args(["--model_name=ner", "--model_base_path=/m",
                                  "--port=8500", "--rest_api_port=8501"])
  assert (args.model_name, args.model_base_path, args.port,
          args.rest_api_port, args.host) == ("ner", "/m", 8500, 8501,
                                             "127.0.0.1")
