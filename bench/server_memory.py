"""The development server's memory for the largest requests its bounds admit.

Serves an export with `serving.server.local_server.LocalModelServer` in this
process, while a client in a fresh process of its own
(`bench.children.run_in_fresh_process`, so the client's memory is not
counted) sends, for every signature the export has, the largest request
`serving.server.request_bounds` admits (--max_batch_rows rows of
max_position_embeddings positions; for predict_text as many characters in
all), over gRPC and over REST JSON, and records the server's resident memory
before and its peak (VmHWM) after each. Then the probes of issue 24, which
must be refused without a rise of the peak: the 129-byte gRPC request
declaring [16384, 16384] per input and a REST body of 100,000 sentences.

    python -m bench.server_memory --model_base_path output/export \
        --label embedded-default --output bench/results/server_memory.json

Prints one JSON object (and adds it, by label, to --output).
"""

import argparse
import base64
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import children  # pylint: disable=wrong-import-position
from serving.server import local_server  # pylint: disable=wrong-import-position
from serving.server import request_bounds  # pylint: disable=wrong-import-position
from trainer import cpu_features  # pylint: disable=wrong-import-position
from trainer.export import export_versions  # pylint: disable=wrong-import-position

IDS_KEYS = ("input_ids", "input_mask", "segment_ids")


def memory_mb(pid, field):
  with open(f"/proc/{pid}/status", encoding="ascii") as reader:
    return int(re.search(rf"{field}:\s+(\d+) kB", reader.read()).group(1)) / 1024


def largest_inputs(signature, rows, positions):
  """{input key: numpy array} of the largest admitted request."""
  if signature == "serving_default":
    ids = np.full([rows, positions], 100, np.int32)
    return {"input_ids": ids, "input_mask": np.ones_like(ids),
            "segment_ids": np.zeros_like(ids)}
  if signature == "predict_examples":
    example = tf.train.Example(features=tf.train.Features(feature={
        key: tf.train.Feature(int64_list=tf.train.Int64List(
            value=[100 if key == "input_ids" else int(key == "input_mask")]
            * positions)) for key in IDS_KEYS})).SerializeToString()
    return {"examples": np.array([example] * rows, object)}
  # predict_text: rows x positions characters in all (the element bound).
  return {"text": np.array(["张" * positions] * rows, object)}


def rest_body(signature, inputs):
  def ready(array):
    if array.dtype == object:
      return [({"b64": base64.b64encode(value).decode()}
               if signature == "predict_examples" else value)
              for value in array.tolist()]
    return array.tolist()
  return json.dumps({"signature_name": signature,
                     "inputs": {key: ready(value)
                                for key, value in inputs.items()}},
                    ensure_ascii=False).encode("utf-8")


def grpc_request(signature, inputs):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "ner"
  request.model_spec.signature_name = signature
  for key, value in inputs.items():
    request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
  return request


def post(port, body):
  request = urllib.request.Request(
      f"http://127.0.0.1:{port}/v1/models/ner:predict", data=body,
      headers={"Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(request, timeout=600) as reply:
      return reply.status
  except urllib.error.HTTPError as error:
    return error.code


def probe_request():
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "ner"
  request.model_spec.signature_name = "serving_default"
  for key in IDS_KEYS:
    proto = tensor_pb2.TensorProto(dtype=tf.int32.as_datatype_enum)
    proto.tensor_shape.dim.add(size=16384)
    proto.tensor_shape.dim.add(size=16384)
    proto.int_val.append(1)
    request.inputs[key].CopyFrom(proto)
  return request


def send_requests(server_pid, grpc_port, rest_port, version_dir,
                  max_batch_rows):
  """The client's side (a fresh process): the largest requests, the probes.

  Reads the server's memory from /proc/<server_pid>/status after each.
  """
  with open(os.path.join(version_dir, "assets.extra", "ner_config.json"),
            encoding="utf-8") as reader:
    positions = int(json.load(reader).get("max_position_embeddings") or 512)
  result = {"max_batch_rows": max_batch_rows,
            "max_position_embeddings": positions,
            "max_elements": max_batch_rows * positions, "requests": []}
  with grpc.insecure_channel(
      f"127.0.0.1:{grpc_port}",
      options=[("grpc.max_send_message_length", 1 << 30),
               ("grpc.max_receive_message_length", 1 << 30)]) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with urllib.request.urlopen(
        f"http://127.0.0.1:{rest_port}/v1/models/ner/metadata",
        timeout=60) as reply:
      served = json.load(reply)["metadata"]["signature_def"]["signature_def"]
    signatures = [name for name in
                  ("serving_default", "predict_examples", "predict_text")
                  if name in served]
    for name in signatures:  # warm: each signature once, small
      stub.Predict(grpc_request(name, largest_inputs(name, 1, 8)), timeout=600)
    result["rss_after_warmup_mb"] = round(memory_mb(server_pid, "VmRSS"), 1)
    result["peak_after_warmup_mb"] = round(memory_mb(server_pid, "VmHWM"), 1)
    for name in signatures:
      inputs = largest_inputs(name, max_batch_rows, positions)
      for front in ("grpc", "rest"):
        started = time.monotonic()
        if front == "grpc":
          stub.Predict(grpc_request(name, inputs), timeout=600)
          status = 200
        else:
          status = post(rest_port, rest_body(name, inputs))
        result["requests"].append({
            "signature": name, "front": front, "status": status,
            "shape": [max_batch_rows, positions],
            "seconds": round(time.monotonic() - started, 2),
            "peak_mb": round(memory_mb(server_pid, "VmHWM"), 1),
            "rss_after_mb": round(memory_mb(server_pid, "VmRSS"), 1)})
    peak = memory_mb(server_pid, "VmHWM")
    probes = []
    started = time.monotonic()
    try:
      stub.Predict(probe_request(), timeout=60)
      code = "OK"
    except grpc.RpcError as error:
      code = error.code().name
    probes.append({"probe": "129-byte gRPC request declaring [16384, 16384] "
                            "per input", "answer": code,
                   "ms": round((time.monotonic() - started) * 1000, 1)})
    body = json.dumps({"signature_name": "predict_text",
                       "instances": ["张三在北京工作。"] * 100_000},
                      ensure_ascii=False).encode("utf-8")
    started = time.monotonic()
    probes.append({"probe": f"REST body of 100,000 sentences "
                            f"({len(body) / 1e6:.1f} MB)",
                   "answer": post(rest_port, body),
                   "ms": round((time.monotonic() - started) * 1000, 1)})
    result["probes"] = probes
  result["peak_rise_from_probes_mb"] = round(
      memory_mb(server_pid, "VmHWM") - peak, 1)
  result["peak_mb"] = round(memory_mb(server_pid, "VmHWM"), 1)
  result["budget_above_warm_rss_mb"] = round(
      result["peak_mb"] - result["rss_after_warmup_mb"], 1)
  return result


def measure(base, max_batch_rows):
  """Serves `base` here; a fresh process sends the requests."""
  server = local_server.LocalModelServer(
      "ner", base, max_batch_rows=max_batch_rows).start()
  try:
    return children.run_in_fresh_process(
        send_requests, os.getpid(), server.grpc_port, server.rest_port,
        export_versions.latest_version_dir(base), max_batch_rows)
  finally:
    server.stop()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model_base_path", required=True)
  parser.add_argument("--label", required=True,
                      help="name of this model in --output")
  parser.add_argument("--max_batch_rows", type=int,
                      default=request_bounds.DEFAULT_MAX_BATCH_ROWS,
                      help="the server's --max_batch_rows")
  parser.add_argument("--output", default="",
                      help="JSON file to add the result to (by label)")
  args = parser.parse_args()
  result = measure(os.path.abspath(args.model_base_path), args.max_batch_rows)
  result["label"] = args.label
  result["model_base_path"] = args.model_base_path
  result["cpu_flags"] = cpu_features.reported_flags()
  result["note"] = ("2-core machine shared with other jobs; memory figures "
                    "are of the serving process (the client runs in another)")
  print(json.dumps(result, indent=1))
  if args.output:
    results = {}
    if os.path.exists(args.output):
      with open(args.output, encoding="utf-8") as reader:
        results = json.load(reader)
    results[args.label] = result
    with open(args.output, "w", encoding="utf-8") as writer:
      json.dump(results, writer, indent=1)
      writer.write("\n")


if __name__ == "__main__":
  main()
