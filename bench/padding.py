"""Padding of length-bucketed training batches, measured on the real pipeline.

    python -m bench.padding --checkpoint_dir CKPT
    python -m bench.padding --checkpoint_dir CKPT --context_pieces 32

Builds a training file's feature windows with `RunInputs` (as training
does, with --context_pieces), then reads one epoch of shuffled, bucketed batches
through `input_pipeline.input_fn_builder` for each bucket layout and counts
padded positions: padding = 1 - real positions / batch positions. Layouts
(--layouts, NAME:NUM_BUCKETS:MULTIPLE): "before" is the layout derived before
issue 12 (8 buckets in multiples of 8), "cpu" today's default, "gpu" the
--use_amp/--use_xla rounding. Prints a table and writes
bench/results/padding[_ctxN].json.
"""

import argparse
import json
import os
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

# pylint: disable=wrong-import-position,import-outside-toplevel
from trainer.features import windows as features_lib  # noqa: E402

DEFAULT_LAYOUTS = (
    f"before:8:8,cpu:{features_lib.DEFAULT_NUM_BUCKETS}:"
    f"{features_lib.CPU_LENGTH_MULTIPLE},gpu:"
    f"{features_lib.DEFAULT_NUM_BUCKETS}:"
    f"{features_lib.ACCELERATOR_LENGTH_MULTIPLE}")


def parse_layouts(text):
  """'a:8:8,b:32:2' -> [("a", 8, 8), ("b", 32, 2)]; ValueError otherwise."""
  layouts = []
  for item in text.split(","):
    parts = item.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts[1:]):
      raise ValueError(f"--layouts entry {item!r} is not "
                       "NAME:NUM_BUCKETS:MULTIPLE (e.g. cpu:32:2).")
    layouts.append((parts[0], int(parts[1]), int(parts[2])))
  return layouts


def training_features(args, folder):
  """(feature file, windows, length histogram) of --data_file, built by
  `RunInputs` exactly as a training run with these settings builds them."""
  from trainer.features import input_pipeline
  from trainer.run import train_lib
  from trainer.run.run_inputs import RunInputs
  config = train_lib.NerConfig(
      output_dir=folder, train_file=args.data_file, do_train=True,
      bert_config_file=os.path.join(args.checkpoint_dir, "bert_config.json"),
      vocab_file=os.path.join(args.checkpoint_dir, "vocab.txt"),
      do_lower_case=not args.cased, max_seq_length=args.max_seq_length,
      context_pieces=args.context_pieces)
  path, count = RunInputs(config).prepare().features_file("train")
  return path, count, input_pipeline.read_feature_meta(path)[
      "length_histogram"]


def epoch_padding(path, boundaries, batch_size, max_seq_length, num_windows,
                  seed=0):
  """(padding share, batches) of one epoch of shuffled bucketed batches."""
  from trainer.features import input_pipeline
  from trainer import schema
  dataset = input_pipeline.input_fn_builder(
      path, is_training=True, batch_size=batch_size,
      max_seq_length=max_seq_length, bucket_boundaries=boundaries,
      seed=seed)(None)
  real = padded = batches = seen = 0
  for batch in dataset:
    mask = batch[schema.INPUT_MASK].numpy()
    real += int(mask.sum())
    padded += mask.size
    batches += 1
    seen += mask.shape[0]
    if seen >= num_windows:
      break
  return 1.0 - real / padded, batches


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_file", default=os.path.join(
      REPO_ROOT, "..", "shared", "data", "conll2003", "train.txt"))
  parser.add_argument("--checkpoint_dir", required=True,
                      help="bert_config.json and vocab.txt of the model.")
  parser.add_argument("--cased", action="store_true")
  parser.add_argument("--max_seq_length", type=int, default=128)
  parser.add_argument("--context_pieces", type=int, default=0)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--layouts", default=DEFAULT_LAYOUTS)
  parser.add_argument("--results_dir",
                      default=os.path.join(REPO_ROOT, "bench", "results"))
  args = parser.parse_args(argv)
  layouts = parse_layouts(args.layouts)
  rows = []
  with tempfile.TemporaryDirectory() as folder:
    path, num_windows, histogram = training_features(args, folder)
    for name, num_buckets, multiple in layouts:
      boundaries = features_lib.derive_bucket_boundaries(
          histogram, num_buckets, multiple)
      start = time.perf_counter()
      padding, batches = epoch_padding(path, boundaries, args.batch_size,
                                       args.max_seq_length, num_windows)
      rows.append({"layout": name, "num_buckets": num_buckets,
                   "multiple": multiple, "boundaries": boundaries,
                   "buckets": len(boundaries) + 1,
                   "measured_padding": round(padding, 4),
                   "padding_bound": round(features_lib.padding_bound(
                       histogram, boundaries), 4),
                   "batches": batches,
                   "seconds": round(time.perf_counter() - start, 1)})
  result = {"data_file": os.path.abspath(args.data_file),
            "windows": num_windows, "context_pieces": args.context_pieces,
            "batch_size": args.batch_size, "rows": rows,
            "command": "python -m bench.padding " + " ".join(
                sys.argv[1:] if argv is None else argv)}
  print("| layout | buckets | padding, one shuffled epoch | at most |")
  print("| --- | --- | --- | --- |")
  for row in rows:
    print(f"| {row['layout']} ({row['num_buckets']} quantiles, multiple "
          f"{row['multiple']}) | {row['buckets']} | "
          f"{100 * row['measured_padding']:.1f}% | "
          f"{100 * row['padding_bound']:.1f}% |")
  suffix = f"_ctx{args.context_pieces}" if args.context_pieces else ""
  os.makedirs(args.results_dir, exist_ok=True)
  with open(os.path.join(args.results_dir, f"padding{suffix}.json"), "w",
            encoding="utf-8") as writer:
    json.dump(result, writer, indent=2)
  return result


if __name__ == "__main__":
  main()
