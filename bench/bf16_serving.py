"""bfloat16 serving against float32 on the same export: tags and entity F1.

    python -m bench.bf16_serving --export_dir RUN/export \\
        --test_file ../shared/data/conll2003/test.txt

Loads the export's latest version twice in process, as the development
server (and TF Serving) would serve it: in float32, and with
``mixed_precision="bfloat16"`` (oneDNN's bfloat16 rewrite of the session,
TF Serving's --mixed_precision=bfloat16). Both tag every sentence of
--test_file through the client's own request code (`NerClient.records_for_sentences`:
windows, merge) with the gold tokens as words, so each token's tag is compared with
the other precision's and with the gold tag. Prints and writes to
--output (default bench/results/bf16_serving.json): the token agreement, each
precision's entity P/R/F1 (`trainer.evaluation.metrics.entity_metrics`,
seqeval) and the difference, and the CPU flags. The issue's bar: at least
99.5% of tokens tagged alike and F1 within 0.2 points. Needs a CPU with
AVX512_BF16 or AMX (elsewhere the rewrite emulates bfloat16: slow).
"""

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

# pylint: disable=wrong-import-position
from serving.client import client as client_lib  # noqa: E402
from serving.client import transports  # noqa: E402
from serving.server import saved_model_session  # noqa: E402
from trainer import cpu_features  # noqa: E402
from trainer.data import readers  # noqa: E402
from trainer.evaluation import metrics as metrics_lib  # noqa: E402


def token_agreement(first: Sequence[Sequence[str]],
                    second: Sequence[Sequence[str]]) -> float:
  """Share of tokens tagged alike.

  Example: [["O", "B-PER"]] and [["O", "O"]] -> 0.5.
  """
  pairs = [(a, b) for x, y in zip(first, second, strict=True)
           for a, b in zip(x, y, strict=True)]
  return sum(a == b for a, b in pairs) / len(pairs)


def tag_sentences(export_dir: str, sentences, mixed_precision: Optional[str],
                  batch_size: int) -> List[List[str]]:
  """Tags of every sentence (gold tokens as words) served in process."""
  transport = transports.SavedModelTransport(export_dir,
                                             mixed_precision=mixed_precision)
  with client_lib.NerClient(export_dir=export_dir, transport=transport,
                            batch_size=batch_size) as ner:
    records = ner.records_for_sentences(sentences)
  return [list(record["tags"]) for record in records]


def compare(export_dir: str, test_file: str,
            batch_size: int = 32) -> Dict[str, Any]:
  """The figures `main` prints: agreement, F1 of each precision."""
  sentences = readers.read_sentences(test_file)
  gold = [list(sentence.tags) for sentence in sentences]
  result: Dict[str, Any] = {"export_dir": export_dir, "test_file": test_file,
                            "sentences": len(sentences),
                            "tokens": sum(len(tags) for tags in gold)}
  tags = {}
  for name, mode in (("float32", None),
                     ("bfloat16", saved_model_session.BFLOAT16)):
    start = time.perf_counter()
    tags[name] = tag_sentences(export_dir, sentences, mode, batch_size)
    scores = metrics_lib.entity_metrics(gold, tags[name])
    result[name] = {"precision": scores["precision"],
                    "recall": scores["recall"], "f1": scores["f1"],
                    "seconds": round(time.perf_counter() - start, 1)}
  result["token_agreement"] = token_agreement(tags["float32"],
                                              tags["bfloat16"])
  result["f1_difference_points"] = 100 * (result["bfloat16"]["f1"]
                                          - result["float32"]["f1"])
  result["cpu_flags"] = cpu_features.reported_flags()
  return result


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m bench.bf16_serving",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--export_dir", required=True,
                      help="export base (its latest version) or a version.")
  parser.add_argument("--test_file", required=True,
                      help="labelled file (any format the trainer reads).")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--output", default=os.path.join(
      REPO_ROOT, "bench", "results", "bf16_serving.json"))
  args = parser.parse_args(argv)
  result = compare(args.export_dir, args.test_file, args.batch_size)
  result["command"] = " ".join(["python -m bench.bf16_serving"] +
                               list(sys.argv[1:] if argv is None else argv))
  with open(args.output, "w", encoding="utf-8") as writer:
    json.dump(result, writer, indent=2)
  print(json.dumps(result, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
