"""Serving speed of `bench.distill`'s exports and of the Hugging Face peer.

One phase, after all training: in each round one child process serves every
export in turn through the real client over the in-process SavedModel
(`bench.serving_latency.measure`), then `bench.hf_peer` (started by
`bench.vs_pytorch.launch`) measures the peer's single-sentence latency and
batch prediction; every other round runs in the reverse order, so drifting
background load hits every model alike. `speed_summary` takes the median
of each figure over the rounds.
"""

import argparse
import os
import random
import statistics

from bench import vs_pytorch
from bench.distill_report import HF_PEER


def serve_exports(spec):
  """In a child: `serving_latency.measure` of each export, in spec order.

  Returns {mode: {"p50_ms", "p99_ms", "sentences_per_s", "loadavg_1min"}}.
  """
  # pylint: disable=import-outside-toplevel
  from bench import serving_latency
  from serving.client import client as client_lib
  from serving.client import transports
  from serving.server import saved_model_session
  sentences = serving_latency.read_sentences(spec["sentences_file"])
  figures = {}
  # Single sentences in the "latency" thread mode (one thread runs the ops in
  # order: what a latency-bound server is configured with), batches in the
  # "throughput" mode (TensorFlow's pools), as `bench.ours_side` does.
  phases = ((saved_model_session.LATENCY, spec["requests"], 1,
             ("p50_ms", "p99_ms")),
            (saved_model_session.THROUGHPUT, 2, spec["batches"],
             ("sentences_per_s",)))
  for name, export_dir in spec["exports"]:
    loadavg = os.getloadavg()[0]
    figures[name] = {}
    for thread_mode, requests, batches, keys in phases:
      with client_lib.NerClient(
          transport=transports.SavedModelTransport(export_dir,
                                                   thread_mode=thread_mode),
          export_dir=export_dir, batch_size=spec["batch_size"],
          timeout_s=60.0) as ner:
        measured = serving_latency.measure(
            ner, sentences, requests, spec["batch_size"], batches)
      figures[name].update({key: measured[key] for key in keys})
    figures[name]["loadavg_1min"] = [loadavg, os.getloadavg()[0]]
  return figures


def write_speed_files(test_file, folder, batches):
  """The sentences every side is timed on, shuffled with seed 0.

  Writes sentences.txt (one per line, words joined by spaces: our client),
  hf_latency.txt (CoNLL, the same sentences: the peer's single requests)
  and hf_batches.txt (the first `vs_pytorch.BATCH_SIZE` sentences repeated
  batches + 2 times: the peer's steady rate leaves out its first and last
  batch, so it times as many batches as `serving_latency.measure`).
  Returns {"sentences", "hf_latency", "hf_batches"} -> path.

  Example: test sentences A..Z, batches 1 -> sentences.txt holds all 26
  in a shuffled order S, hf_batches.txt S[0:32] (S[:26] + S[:6]) 3 times.
  """
  words, tags = vs_pytorch.read_conll(test_file)
  order = list(range(len(words)))
  random.Random(0).shuffle(order)
  words, tags = [words[i] for i in order], [tags[i] for i in order]
  os.makedirs(folder, exist_ok=True)
  paths = {name: os.path.join(folder, name + ".txt")
           for name in ("sentences", "hf_latency", "hf_batches")}
  with open(paths["sentences"], "w", encoding="utf-8") as writer:
    writer.writelines(" ".join(sentence) + "\n" for sentence in words)
  vs_pytorch.write_conll(paths["hf_latency"], words, tags)
  batch = [index % len(words) for index in range(vs_pytorch.BATCH_SIZE)]
  vs_pytorch.write_conll(paths["hf_batches"],
                         [words[i] for i in batch] * (batches + 2),
                         [tags[i] for i in batch] * (batches + 2))
  return paths


def _hf_figures(spec):
  """The peer's latency and batch prediction, as `serve_exports` figures."""
  loadavg = os.getloadavg()[0]
  found = {}
  for measure, test_file in (("latency", spec["hf_latency"]),
                             ("predict", spec["hf_batches"])):
    try:
      found[measure] = vs_pytorch.launch(
          dict(spec, measure=measure, test_file=test_file),
          argparse.Namespace(onednn="default"))
    except RuntimeError as error:
      return {"error": str(error)[-2000:]}
  return {"p50_ms": found["latency"]["p50_ms"],
          "p99_ms": found["latency"]["p99_ms"],
          "sentences_per_s": found["predict"].get(
              "steady_sentences_per_second"),
          "cold_sentences_per_s": found["predict"]["sentences_per_second"],
          "loadavg_1min": [loadavg, os.getloadavg()[0]], "raw": found}


def speed_rounds(exports, hf_spec, serve_spec, rounds, work_dir, run_child):
  """Every export, then the HF peer; reversed every other round.

  `run_child(spec, log_path) -> (result or None, error or None, peak bytes)`
  runs `serve_exports(spec)` in a child process (`bench.distill`'s).

  Returns one {"round", "order", "figures": {name: figures or {"error"}}}
  per round.
  """
  results = []
  for index in range(rounds):
    parts = [("ours", list(exports)), ("hf", None)]
    if index % 2:
      parts = [("hf", None), ("ours", list(reversed(exports)))]
    figures, order = {}, []
    for side, names in parts:
      if side == "hf":
        order.append(HF_PEER)
        figures[HF_PEER] = _hf_figures(hf_spec)
        continue
      order += names
      spec = dict(serve_spec, job="serve",
                  exports=[[name, exports[name]] for name in names])
      found, error, _ = run_child(spec, os.path.join(
          work_dir, "logs", f"serve-round{index}.log"))
      figures.update(found or {name: {"error": error} for name in names})
    results.append({"round": index, "order": order, "figures": figures})
  return results


SPEED_KEYS = ("p50_ms", "p99_ms", "sentences_per_s")


def speed_summary(rounds):
  """Per model, the median of each `SPEED_KEYS` figure over the rounds.

  Example: p50 10, 12 and 11 ms in three rounds -> {"p50_ms": 11,
  "p50_ms_values": [10, 12, 11], ...}; a model that failed in every round
  -> {"error": its last error}.
  """
  summary = {}
  for entry in rounds:
    for name, figures in entry["figures"].items():
      summary.setdefault(name, []).append(figures)
  for name, measured in summary.items():
    good = [figures for figures in measured if "error" not in figures]
    if not good:
      summary[name] = {"error": measured[-1]["error"]}
      continue
    row = {}
    for key in SPEED_KEYS:
      values = [figures[key] for figures in good if figures.get(key)]
      row[key] = statistics.median(values) if values else None
      row[key + "_values"] = values
    loads = [load for figures in good for load in figures["loadavg_1min"]]
    row["loadavg_1min"] = [min(loads), max(loads)]
    summary[name] = row
  return summary


def measure_speed(modes, settings, data_dir, hf_model_dir, work_dir,
                  run_child):
  """The serving phase: every mode's first-seed export and the HF peer.

  Args:
    modes: {mode: result with "export" (its first seed's export or None)}.
    settings: "rounds", "latency_requests" (single sentences timed) and
      "batches" (batches of 32 timed).
    data_dir: the CoNLL folder trained on (train.txt: the peer's labels;
      test.txt: the sentences timed).
    hf_model_dir: the peer's model.
    work_dir: sentence files go to work_dir/speed, logs to work_dir/logs.
    run_child: see `speed_rounds`.

  Returns:
    {"exports", "files", "settings", "rounds" (`speed_rounds`), "summary"
    (`speed_summary`)}.
  """
  exports = {name: mode["export"] for name, mode in modes.items()
             if mode.get("export") and os.path.isdir(mode["export"])}
  files = write_speed_files(os.path.join(data_dir, "test.txt"),
                            os.path.join(work_dir, "speed"),
                            settings["batches"])
  _, train_tags = vs_pytorch.read_conll(os.path.join(data_dir, "train.txt"))
  hf_spec = {"framework": "hf", "precision": "float32",
             "hf_model_dir": hf_model_dir,
             "labels": sorted({tag for tags in train_tags for tag in tags}),
             "requests": settings["latency_requests"],
             "hf_latency": files["hf_latency"],
             "hf_batches": files["hf_batches"]}
  serve_spec = {"sentences_file": files["sentences"],
                "requests": settings["latency_requests"],
                "batch_size": vs_pytorch.BATCH_SIZE,
                "batches": settings["batches"],
                "thread_mode": ("single sentences: latency (1 thread); batches: "
                                "throughput (TensorFlow's pools)")}
  rounds = speed_rounds(exports, hf_spec, serve_spec, settings["rounds"],
                        work_dir, run_child)
  return {"exports": exports, "files": files, "settings": serve_spec,
          "rounds": rounds, "summary": speed_summary(rounds)}

