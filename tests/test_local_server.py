"""End to end: LocalModelServer, the client over gRPC and REST, both CLIs.

The gRPC and REST APIs alone are tested in test_grpc_service.py and
test_rest_api.py, the model manager in test_model_manager.py.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import types

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.client import client
from serving.client import request_codec
from serving.client import transports
from serving.server import local_server
from tests import serving_fixtures

TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def served():
  return serving_fixtures.served_model()


@pytest.fixture(scope="module")
def server(served):
  with local_server.LocalModelServer("ner", served["export_dir"]) as running:
    yield running


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
  with client.NerClient(f"127.0.0.1:{port}", "ner",
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


def _ids_request():
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "ner"
  request.model_spec.signature_name = "serving_default"
  for key in ("input_ids", "input_mask", "segment_ids"):
    request.inputs[key].CopyFrom(tf.make_tensor_proto(np.ones([2, 5],
                                                              np.int32)))
  return request


def test_concurrent_requests_have_no_errors(served, server):
  """8 threads x 50 requests, gRPC and REST mixed, bounded by a deadline."""
  errors, answers = [], []
  clients = [client.NerClient(
      f"127.0.0.1:{server.grpc_port if i % 2 == 0 else server.rest_port}",
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
    with grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}") as channel:
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
      "--server", f"127.0.0.1:{server.grpc_port}", "--model_name", "ner",
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
  status = client.main(["--server", f"127.0.0.1:{server.grpc_port}",
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
  args = local_server.parse_args(["--model_base_path=/m", "--rest_api_port=-1",
                                  "--file_system_poll_wait_seconds=0.5"])
  assert (args.model_name, args.port, args.rest_api_port,
          args.file_system_poll_wait_seconds) == ("ner", 8500, -1, 0.5)
  with pytest.raises(SystemExit):
    local_server.parse_args(["--model_base_path=/m",
                             "--file_system_poll_wait_seconds=0"])


def test_thread_flags_default_to_latency_with_tf_serving_names():
  def threads(*flags):
    args = local_server.parse_args(["--model_base_path=/m", *flags])
    return (args.tensorflow_intra_op_parallelism,
            args.tensorflow_inter_op_parallelism)

  assert threads() == (1, 1)
  assert threads("--thread_mode=throughput") == (0, 0)
  assert threads("--thread_mode=throughput",
                 "--tensorflow_inter_op_parallelism=1") == (0, 1)
  assert threads("--tensorflow_intra_op_parallelism=4") == (4, 1)
  with pytest.raises(SystemExit):
    threads("--tensorflow_intra_op_parallelism=-1")
  with pytest.raises(SystemExit):
    threads("--thread_mode=fast")


def _records_from_each(served, *servers):
  """The client's records of the PREDICT texts from each server (gRPC)."""
  answers = []
  for running in servers:
    with client.NerClient(f"127.0.0.1:{running.grpc_port}", "ner",
                          export_dir=served["export_dir"],
                          timeout_s=TIMEOUT_S) as ner:
      answers.append(ner.predict_records(serving_fixtures.PREDICT))
  return answers


def test_throughput_server_answers_as_the_latency_server(served, server):
  assert server.manager.threads == (1, 1)  # the default: latency
  with local_server.LocalModelServer(
      "ner", served["export_dir"], rest_api_port=None, intra_op_threads=0,
      inter_op_threads=0) as throughput:
    assert throughput.manager.threads == (0, 0)
    answers = _records_from_each(served, server, throughput)
  for latency_record, throughput_record in zip(*answers):
    _same_records(latency_record, throughput_record)


@pytest.mark.parametrize("module", ["serving.client", "serving.local_server"])
def test_modules_run_as_scripts(module):
  result = subprocess.run([sys.executable, "-m", module, "--help"],
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith(f"usage: python -m {module} ")


def test_mixed_precision_flag_is_tf_servings_and_checks_the_cpu(monkeypatch):
  args = local_server.parse_args(["--model_base_path=/m"])
  assert args.mixed_precision == ""  # float32, as TF Serving's default
  monkeypatch.setattr(local_server.cpu_features, "bf16_support_error",
                      lambda flag_name: None)
  args = local_server.parse_args(["--model_base_path=/m",
                                  "--mixed_precision=bfloat16"])
  assert args.mixed_precision == "bfloat16"
  monkeypatch.setattr(local_server.cpu_features, "bf16_support_error",
                      lambda flag_name: f"Cannot use {flag_name}: no bf16.")
  with pytest.raises(SystemExit):
    local_server.parse_args(["--model_base_path=/m",
                             "--mixed_precision=bfloat16"])
  with pytest.raises(SystemExit):
    local_server.parse_args(["--model_base_path=/m",
                             "--mixed_precision=float16"])


def test_bfloat16_server_runs_the_rewrite_and_tags_as_float32(served, server):
  rewrite = tf.compat.v1.ConfigProto().graph_options.rewrite_options
  assert server.manager.mixed_precision is None
  current = server.manager.get("ner", None)
  assert current.model.config.graph_options.rewrite_options == rewrite
  with local_server.LocalModelServer(
      "ner", served["export_dir"], rest_api_port=None,
      mixed_precision="bfloat16") as bf16_server:
    loaded = bf16_server.manager.get("ner", None)
    options = loaded.model.config.graph_options.rewrite_options
    assert options.auto_mixed_precision_onednn_bfloat16 == options.ON
    answers = _records_from_each(served, server, bf16_server)
  pairs = [(a, b) for fp32, bf16 in zip(*answers)
           for a, b in zip(fp32["tags"], bf16["tags"])]
  assert len(pairs) > 20
  # The bar for real models is 99.5% of CoNLL test tokens; the tiny
  # model's scores are flatter, so a near tie may flip.
  assert sum(a == b for a, b in pairs) / len(pairs) >= 0.9


def test_records_for_sentences_are_predict_records_of_split_texts(served):
  sentences = request_codec.sentences_from_texts(serving_fixtures.PREDICT)
  with client.NerClient(export_dir=served["export_dir"],
                        transport=transports.SavedModelTransport(
                            served["export_dir"])) as ner:
    assert ner.records_for_sentences(sentences) == ner.predict_records(
        serving_fixtures.PREDICT)
  unused_transport = types.SimpleNamespace(close=lambda: None)
  with client.NerClient(signature="predict_text",
                        transport=unused_transport) as ner:
    with pytest.raises(ValueError, match="needs a windowed signature"):
      ner.records_for_sentences(sentences)
