"""Batch throughput of the client with and without length-grouped requests.

`NerClient` sorts a call's windows by length and cuts them into requests
that minimize padded pieces plus `request_overhead_pieces` per request
(`request_codec.length_batches`). This bench times the same batches of
sentences (the first `--batch_size` of `--input_file`, as
`bench.serving_latency` does) for each overhead in `--overheads` ("none" =
the request order, `batch_size` windows at a time), interleaved over
`--rounds` rounds, in process (the SavedModel in TensorFlow's throughput
thread mode) and, with `--grpc`, over gRPC to the local server. It also
checks that every setting gives the same tags on the first
`--check_sentences` sentences. Prints a table; writes
bench/results/<results_name>.{json,md}.

    python -m bench.request_grouping --export_dir RUN/export \\
        --input_file sentences.txt --grpc
"""

import argparse
import json
import os
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

from bench import conll2003
from bench import serving_latency
from serving.client import client as client_lib
from serving.client import transports
from serving.server import local_server
from serving.server import saved_model_session
from trainer.data.sample_data import sample_data_dir
from trainer.export import export_versions

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_overheads(text: str) -> List[Optional[int]]:
  """"none,32,64" -> [None, 32, 64] (argparse type)."""
  values = []
  for item in text.split(","):
    item = item.strip().lower()
    if item == "none":
      values.append(None)
    elif item.isdigit():
      values.append(int(item))
    else:
      raise argparse.ArgumentTypeError(
          f"{item!r}: use comma-separated piece counts >= 0 or 'none'.")
  return values


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m bench.request_grouping",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--export_dir", required=True,
                      help="export base (or version) folder.")
  parser.add_argument("--input_file",
                      default=os.path.join(sample_data_dir(), "predict.txt"),
                      help="sentences, one per line (default: the sample).")
  parser.add_argument("--overheads", type=parse_overheads,
                      default=parse_overheads("none,32,64,128"))
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--batches", type=int, default=8,
                      help="calls of batch_size sentences per round.")
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--check_sentences", type=int, default=500)
  parser.add_argument("--grpc", action="store_true",
                      help="also over gRPC to the local server.")
  parser.add_argument("--results_dir",
                      default=os.path.join(REPO_ROOT, "bench", "results"))
  parser.add_argument("--results_name", default="request_grouping")
  return parser.parse_args(argv)


def _label(overhead: Optional[int]) -> str:
  return "none" if overhead is None else str(overhead)


def time_clients(clients: Dict[str, client_lib.NerClient],
                 batch: Sequence[str], batches: int,
                 rounds: int) -> Dict[str, Dict[str, object]]:
  """{label: {"sentences_per_s": median, "rounds": [...]}}, the clients
  taking turns in each round (every other round reversed)."""
  for ner in clients.values():
    ner.predict(batch)  # warm up every request shape the plan makes
  rates = {label: [] for label in clients}
  for index in range(rounds):
    order = list(clients) if index % 2 == 0 else list(clients)[::-1]
    for label in order:
      started = time.perf_counter()
      for _ in range(batches):
        clients[label].predict(batch)
      rates[label].append(round(len(batch) * batches /
                                (time.perf_counter() - started), 1))
  return {label: {"sentences_per_s": round(statistics.median(values), 1),
                  "rounds": values} for label, values in rates.items()}


def same_tags(clients: Dict[str, client_lib.NerClient],
              sentences: Sequence[str]) -> Dict[str, int]:
  """{label: sentences whose tags equal the first client's}."""
  tags = {label: [record["tags"] for record in ner.predict_records(sentences)]
          for label, ner in clients.items()}
  first = tags[next(iter(tags))]
  return {label: sum(a == b for a, b in zip(first, values))
          for label, values in tags.items()}


def markdown(result: Dict[str, object]) -> str:
  lines = [f"# Length-grouped client requests ({result['machine']})", "",
           f"`{result['command']}`", "",
           f"Export {result['export_dir']}; {result['batch_size']} sentences "
           f"per call, {result['batches']} calls x {result['rounds']} "
           "rounds, median of the rounds; load "
           f"{result['loadavg_start']:.2f} -> {result['loadavg_end']:.2f}.",
           "", "| request_overhead_pieces | " + " | ".join(
               f"{path} sentences/s" for path in result["paths"]) +
           " | same tags |", "| --- | " + " | ".join(
               "---" for _ in result["paths"]) + " | --- |"]
  for label in result["overheads"]:
    cells = [str(result["paths"][path][label]["sentences_per_s"])
             for path in result["paths"]]
    lines.append(f"| {label} | " + " | ".join(cells) +
                 f" | {result['same_tags'][label]}/{result['checked']} |")
  return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  sentences = serving_latency.read_sentences(args.input_file)
  batch = [sentences[i % len(sentences)] for i in range(args.batch_size)]
  loadavg_start = os.getloadavg()[0]
  result = {"command": " ".join(["python -m bench.request_grouping"] + argv),
            "machine": conll2003._machine(),  # pylint: disable=protected-access
            "export_dir": export_versions.latest_version_dir(args.export_dir),
            "batch_size": args.batch_size, "batches": args.batches,
            "rounds": args.rounds,
            "overheads": [_label(value) for value in args.overheads],
            "paths": {}}

  def clients_over(make_transport):
    return {_label(value): client_lib.NerClient(
        transport=make_transport(), export_dir=args.export_dir,
        batch_size=args.batch_size, timeout_s=60.0,
        request_overhead_pieces=value) for value in args.overheads}

  session_transport = transports.SavedModelTransport(
      args.export_dir, thread_mode=saved_model_session.THROUGHPUT)
  clients = clients_over(lambda: session_transport)
  result["paths"]["in-process"] = time_clients(clients, batch, args.batches,
                                               args.rounds)
  checked = sentences[:args.check_sentences]
  result["checked"] = len(checked)
  result["same_tags"] = same_tags(clients, checked)
  if args.grpc:
    base = os.path.dirname(result["export_dir"])
    server = local_server.LocalModelServer(
        "ner", base, rest_api_port=None).start()
    try:
      target = f"127.0.0.1:{server.grpc_port}"
      result["paths"]["gRPC"] = time_clients(clients_over(
          lambda: transports.make_transport(
              transports.GRPC, target, "ner", 60.0, 3, 0.1, None)),
          batch, args.batches, args.rounds)
    finally:
      server.stop()
  result["loadavg_end"] = os.getloadavg()[0]
  result["loadavg_start"] = loadavg_start
  os.makedirs(args.results_dir, exist_ok=True)
  stem = os.path.join(args.results_dir, args.results_name)
  with open(stem + ".json", "w", encoding="utf-8") as writer:
    json.dump(result, writer, indent=2)
  page = markdown(result)
  with open(stem + ".md", "w", encoding="utf-8") as writer:
    writer.write(page)
  print(page)
  return result


if __name__ == "__main__":
  main()
