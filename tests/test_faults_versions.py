"""Deleted versions and killed exports: issue 13, serving item 13.

Before: deleting the served version left it served and reported AVAILABLE,
and `.tmp-export-*` folders of killed exports stayed forever. Now, as TF
Serving's latest-version policy does, the highest remaining version is
served and the deleted one is reported END; the next export removes staging
folders over an hour old, and none is ever served.
"""

import os
import shutil
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.server import local_server
from serving.server import model_manager
from tests import serving_fixtures
from trainer.export import exporter as export_lib
from serving.server import input_checks

TIMEOUT_S = 20.0
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


@pytest.fixture(scope="module")
def served():
  return serving_fixtures.served_model()


def _base_with_versions(served, tmp_path, versions):
  base = tmp_path / "export"
  for version in versions:
    shutil.copytree(served["version_dir"], base / str(version))
  return base


def test_deleting_the_served_version_falls_back(served, tmp_path):
  base = _base_with_versions(served, tmp_path, [1, 2])
  manager = model_manager.ModelManager("ner", str(base))
  assert manager.load_latest() == 2
  assert manager.version_states("ner") == [(2, "AVAILABLE")]
  shutil.rmtree(base / "2")
  assert manager.load_latest() == 1
  assert manager.get("ner").version == 1
  assert manager.version_states("ner") == [(1, "AVAILABLE"), (2, "END")]
  assert manager.version_states("ner", "2") == [(2, "END")]
  with pytest.raises(input_checks.ServingError) as error:
    manager.get("ner", 2)
  assert error.value.code == grpc.StatusCode.NOT_FOUND
  # Copied back, it is the highest again: served, no longer END.
  shutil.copytree(served["version_dir"], base / "2")
  assert manager.load_latest() == 2
  assert manager.version_states("ner") == [(2, "AVAILABLE"), (1, "END")]
  shutil.rmtree(base)
  assert manager.load_latest() is None
  assert manager.version_states("ner") == [(2, "END"), (1, "END")]
  with pytest.raises(input_checks.ServingError,
                     match="No version of ner is served"):
    manager.get("ner")
  with pytest.raises(input_checks.ServingError,
                     match="Could not find any versions of model ner with "
                           "version 7"):
    manager.version_states("ner", 7)


def _status(stub):
  answer = stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
      model_spec={"name": "ner"}), timeout=TIMEOUT_S)
  return [(s.version, s.state) for s in answer.model_version_status]


def _predict_version(channel, version=None):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "ner"
  if version is not None:
    request.model_spec.version.value = version
  for key in ("input_ids", "input_mask", "segment_ids"):
    request.inputs[key].CopyFrom(tf.make_tensor_proto(
        np.array([[2, 5, 3]], np.int32) if key == "input_ids"
        else np.ones([1, 3], np.int32) * (key == "input_mask")))
  stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  return stub.Predict(request, timeout=TIMEOUT_S).model_spec.version.value


def test_the_server_falls_back_and_reports_end(served, tmp_path):
  """gRPC and REST status while the poller sees version 3 deleted."""
  base = _base_with_versions(served, tmp_path, [1, 3])
  with local_server.LocalModelServer("ner", str(base),
                                     poll_seconds=0.1) as server, \
      grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    assert _status(stub) == [(3, AVAILABLE)]
    shutil.rmtree(base / "3")
    deadline = time.time() + 60
    while _status(stub) != [(1, AVAILABLE), (3, END)]:
      assert time.time() < deadline, _status(stub)
      time.sleep(0.1)
    assert _predict_version(channel) == 1
    with pytest.raises(grpc.RpcError) as error:
      _predict_version(channel, 3)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    ok = {"error_code": "OK", "error_message": ""}
    assert serving_fixtures.http_get(server.rest_port, "/v1/models/ner") == (
        200, {"model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": ok},
            {"version": "3", "state": "END", "status": ok}]})
    assert serving_fixtures.http_get(
        server.rest_port, "/v1/models/ner/versions/3") == (
            200, {"model_version_status": [
                {"version": "3", "state": "END", "status": ok}]})


def _staging(base, name, age_s):
  folder = base / name
  folder.mkdir(parents=True)
  (folder / "saved_model.pb").write_bytes(b"half written")
  stamp = time.time() - age_s
  os.utime(folder, (stamp, stamp))
  return folder


def test_staging_folders_are_never_served(tmp_path):
  base = tmp_path / "export"
  _staging(base, ".tmp-export-killed", 7200)
  manager = model_manager.ModelManager("ner", str(base))
  assert manager.load_latest() is None


def test_next_export_removes_stale_staging_folders(served, tmp_path):
  base = tmp_path / "export"
  _staging(base, ".tmp-export-killed", 7200)
  _staging(base, ".tmp-export-running", 60)
  (base / "notes.txt").write_text("kept")
  version_dir = export_lib.export_model(
      str(base), tf.train.latest_checkpoint(served["output_dir"]),
      served["bert_config_file"], served["vocab_file"],
      served["labels_file"], served["ner_config"])
  assert version_dir == str(base / "1")
  assert sorted(os.listdir(base)) == [".tmp-export-running", "1",
                                      "notes.txt"]
