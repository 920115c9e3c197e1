"""Serving latency and throughput of an exported NER model.

Measures, with the real client code path (word splitting, windows, request
building, merging, entities):

  * p50/p99 latency of single-sentence requests, and
  * sentences/s with batches of `--batch_size` (32) sentences,

in process (the SavedModel called directly, no RPC) and over gRPC to a
server: `--server host:port` (e.g. TF Serving), else the local development
server started in this process on a free loopback port. Prints a summary and
one JSON line with every figure.

    python -m bench.serving_latency --export_dir output/export
"""

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from serving.client import client as client_lib
from serving.client import transports
from serving.server import local_server
from serving.server import saved_model_session
from trainer import cpu_features
from trainer.export import export_versions
from trainer import schema
from trainer.data.sample_data import sample_data_dir


def read_sentences(path: str) -> List[str]:
  with open(path, encoding="utf-8") as reader:
    return [line.strip() for line in reader if line.strip()]


def measure(ner: client_lib.NerClient, sentences: Sequence[str],
            single_requests: int, batch_size: int,
            batches: int) -> Dict[str, float]:
  """Returns {p50_ms, p99_ms, sentences_per_s} for one client."""
  ner.predict(sentences[:2])  # warm up (graph, connection)
  latencies = []
  for index in range(single_requests):
    started = time.perf_counter()
    ner.predict([sentences[index % len(sentences)]])
    latencies.append(time.perf_counter() - started)
  batch = [sentences[i % len(sentences)] for i in range(batch_size)]
  started = time.perf_counter()
  for _ in range(batches):
    ner.predict(batch)
  elapsed = time.perf_counter() - started
  return {"p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 3),
          "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 3),
          "sentences_per_s": round(batch_size * batches / elapsed, 1)}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m bench.serving_latency",
                                   description=__doc__.split("\n\n")[0])
  # Required
  parser.add_argument("--export_dir", required=True,
                      help="export base (or version) folder.")
  # Other
  parser.add_argument("--server", help="host:port of a gRPC server; default: "
                                       "start the local server in process.")
  parser.add_argument("--model_name", default=schema.DEFAULT_MODEL_NAME)
  parser.add_argument("--input_file",
                      default=os.path.join(sample_data_dir(), "predict.txt"),
                      help="sentences, one per line (default: the sample).")
  parser.add_argument("--signature", default=schema.PREDICT_EXAMPLES_SIGNATURE,
                      choices=client_lib.CLIENT_SIGNATURES)
  parser.add_argument("--single_requests", type=int, default=200,
                      help="single-sentence requests timed (>= 1).")
  parser.add_argument("--batch_size", type=int, default=32,
                      help="sentences per batched request.")
  parser.add_argument("--batches", type=int, default=20,
                      help="batched requests timed (>= 1).")
  parser.add_argument("--use_bf16", action="store_true",
                      help="serve in bfloat16: the in-process session and "
                           "the local server run the export with "
                           "--mixed_precision=bfloat16 (CPUs with "
                           "AVX512_BF16 or AMX).")
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  sentences = read_sentences(args.input_file)
  settings = dict(export_dir=args.export_dir, signature=args.signature,
                  batch_size=args.batch_size, timeout_s=60.0)
  mixed_precision = saved_model_session.BFLOAT16 if args.use_bf16 else None
  result = {"export_dir": export_versions.latest_version_dir(args.export_dir),
            "signature": args.signature, "batch_size": args.batch_size,
            "mixed_precision": mixed_precision or "float32",
            "cpu_flags": cpu_features.reported_flags(),
            "sentences": len(sentences),
            "mean_chars": round(float(np.mean([len(s) for s in sentences])),
                                1)}
  with client_lib.NerClient(
      transport=transports.SavedModelTransport(
          args.export_dir, mixed_precision=mixed_precision),
      **settings) as ner:
    result["in_process"] = measure(ner, sentences, args.single_requests,
                                   args.batch_size, args.batches)
  server = None
  target = args.server
  if not target:
    base = args.export_dir
    if os.path.exists(os.path.join(base,
                                   export_versions.SAVED_MODEL_FILENAME)):
      raise ValueError(f"--export_dir {base} is a version folder; the local "
                       "server needs the base folder above it.")
    server = local_server.LocalModelServer(
        args.model_name, base, rest_api_port=None,
        mixed_precision=mixed_precision).start()
    target = f"127.0.0.1:{server.grpc_port}"
  try:
    with client_lib.NerClient(target, args.model_name, **settings) as ner:
      result["grpc"] = measure(ner, sentences, args.single_requests,
                               args.batch_size, args.batches)
  finally:
    if server:
      server.stop()
  result["grpc"]["server"] = args.server or "local_server (in process)"
  for name in ("in_process", "grpc"):
    figures = result[name]
    print(f"{name:<10} p50 {figures['p50_ms']:7.2f} ms  "
          f"p99 {figures['p99_ms']:7.2f} ms  batch {args.batch_size}: "
          f"{figures['sentences_per_s']:8.1f} sentences/s")
  print(json.dumps(result))
  return 0


if __name__ == "__main__":
  sys.exit(main())
