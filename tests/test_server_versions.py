"""Version loading as TF Serving does it: issue 24, item 4.

Before: a corrupt saved_model.pb in a new version folder logged a 32-line
traceback every second and the status never showed that version; a folder
`01` was ignored silently, and `1` plus `01` listed version 1 twice; old
sessions were never closed after a swap. Now the failed version is reported
END with its error (no paths), retried with backoff (one log line per
attempt, at once when its files change), only plain decimal folders are
versions (a warning names the others once), and the session of a version no
longer served is closed when its last request ends.
"""

import logging
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc

from serving.server import input_checks
from serving.server import local_server
from serving.server import model_manager
from tests import serving_fixtures

LOG_NAME = "serving.server"


@pytest.fixture(scope="module")
def served():
  return serving_fixtures.served_model()


def _base_with_versions(served, tmp_path, versions):
  base = tmp_path / "export"
  for version in versions:
    shutil.copytree(served["version_dir"], base / str(version))
  return base


def _load_warnings(caplog):
  return [record for record in caplog.records
          if record.levelno >= logging.WARNING
          and record.getMessage().startswith("Could not load")]


def test_a_corrupt_version_is_reported_and_retried_with_backoff(
    served, tmp_path, caplog):
  base = _base_with_versions(served, tmp_path, [1, 2])
  (base / "2" / "saved_model.pb").write_bytes(b"not a SavedModel")
  manager = model_manager.ModelManager("ner", str(base), retry_first_s=0.4)
  with caplog.at_level(logging.INFO, logger=LOG_NAME):
    assert manager.load_latest() is None  # version 2 fails; nothing served
    for _ in range(5):  # polls before the retry time: no new attempt
      manager.load_latest()
    assert len(_load_warnings(caplog)) == 1
    assert manager.version_states("ner") == [(2, "END")]
    code, message = manager.version_errors()[2]
    assert code == "DATA_LOSS" or code == "UNKNOWN", code
    assert str(tmp_path) not in message and message, message
    first = _load_warnings(caplog)[0]
    assert first.exc_info is None  # one line, no traceback
    assert first.getMessage() == (
        f"Could not load ner version 2 (attempt 1; next in 0.4 s or when its "
        f"files change): {message}")
    time.sleep(0.45)
    manager.load_latest()
    assert [record.getMessage().split(":")[0] for record in
            _load_warnings(caplog)] == [
                "Could not load ner version 2 (attempt 1; next in 0.4 s or "
                "when its files change)",
                "Could not load ner version 2 (attempt 2; next in 0.8 s or "
                "when its files change)"]
    # Fixed on disk: loaded at the next poll, without waiting out the backoff.
    shutil.copy(served["version_dir"] + "/saved_model.pb",
                base / "2" / "saved_model.pb")
    assert manager.load_latest() == 2
  assert manager.version_states("ner") == [(2, "AVAILABLE")]
  assert manager.version_errors() == {}


def test_the_served_version_stays_while_a_newer_one_fails(served, tmp_path):
  base = _base_with_versions(served, tmp_path, [1])
  with local_server.LocalModelServer("ner", str(base),
                                     poll_seconds=0.1) as server, \
      grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
    shutil.copytree(served["version_dir"], base / "3")
    (base / "3" / "variables" / "variables.index").write_bytes(b"broken")
    manager = server.manager
    deadline = time.time() + 60
    while 3 not in manager.version_errors():
      assert time.time() < deadline
      time.sleep(0.1)
    code, message = manager.version_errors()[3]
    status, answer = serving_fixtures.http_get(server.rest_port,
                                               "/v1/models/ner")
    assert (status, answer) == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}},
        {"version": "3", "state": "END",
         "status": {"error_code": code, "error_message": message}}]})
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    reply = stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec={"name": "ner"}), timeout=20)
    failed = reply.model_version_status[1]
    assert (failed.version, failed.state, failed.status.error_message) == (
        3, get_model_status_pb2.ModelVersionStatus.END, message)
    assert str(tmp_path) not in message
    assert manager.get("ner").version == 1


def test_only_plain_decimal_folders_are_versions(served, tmp_path, caplog):
  base = _base_with_versions(served, tmp_path, [1])
  shutil.copytree(served["version_dir"], base / "01")
  shutil.copytree(served["version_dir"], base / "007")
  manager = model_manager.ModelManager("ner", str(base))
  with caplog.at_level(logging.WARNING, logger=LOG_NAME):
    assert manager.versions_on_disk() == [1]
    assert manager.versions_on_disk() == [1]  # warned once per folder
  skipped = [record.getMessage() for record in caplog.records
             if record.getMessage().startswith("Skipping folder")]
  assert skipped == [
      f"Skipping folder '007' in {base}: version folders are plain decimal "
      "numbers (1, 2, 10), without leading zeros or signs; rename it to 7 to "
      "serve it.",
      f"Skipping folder '01' in {base}: version folders are plain decimal "
      "numbers (1, 2, 10), without leading zeros or signs; rename it to 1 to "
      "serve it."]
  assert manager.load_latest() == 1
  assert manager.version_states("ner") == [(1, "AVAILABLE")]


def test_sessions_of_unloaded_versions_are_closed(served, tmp_path):
  base = _base_with_versions(served, tmp_path, [1])
  manager = model_manager.ModelManager("ner", str(base))
  assert manager.load_latest() == 1
  first = manager.get("ner")
  run = first.signatures["predict_text"]
  started, release = threading.Event(), threading.Event()

  def slow(**arrays):
    started.set()
    release.wait(20)
    return run(**arrays)

  first.signatures["predict_text"] = slow
  answers = []
  request = threading.Thread(target=lambda: answers.append(
      first.predict("predict_text", {"text": np.array([b"abc"], object)})))
  request.start()
  assert started.wait(20)
  shutil.copytree(served["version_dir"], base / "2")
  assert manager.load_latest() == 2
  assert not first.closed  # a request still runs in it
  release.set()
  request.join(20)
  assert answers[0]["lengths"].tolist() == [3]
  assert first.closed and first.model._session._closed  # pylint: disable=protected-access
  with pytest.raises(input_checks.ServingError) as error:
    first.predict("predict_text", {"text": np.array([b"abc"], object)})
  assert error.value.code == grpc.StatusCode.UNAVAILABLE
  second = manager.get("ner")
  shutil.rmtree(base / "2")
  assert manager.load_latest() == 1
  assert second.closed and manager.get("ner").version == 1
