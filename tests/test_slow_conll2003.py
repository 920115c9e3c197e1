"""Slow: a short real run on CoNLL-2003 from ../shared/data (not committed)."""

import json
import os

import pytest

from trainer.run import train_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONLL_DIR = os.path.normpath(
    os.path.join(REPO_ROOT, "..", "shared", "data", "conll2003"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.isdir(CONLL_DIR),
                       reason=f"needs CoNLL-2003 in {CONLL_DIR} (research "
                       "licence, never committed); it is absent here"),
]


def test_short_run_predicts_every_test_token(tmp_path):
  config = train_lib.NerConfig(
      output_dir=str(tmp_path / "out"), data_dir=CONLL_DIR,
      do_lower_case=False, num_train_steps=20, train_batch_size=16,
      predict_batch_size=64, learning_rate=1e-3, do_train=True,
      do_predict=True)
  summary = train_lib.run(config)
  assert summary["predict"]["sentences"] == 3453
  assert summary["predict"]["tokens"] == 46435
  with open(summary["predict"]["conll"], encoding="utf-8") as reader:
    lines = [line.split() for line in reader if line.strip()]
  assert len(lines) == 46435
  assert all(len(columns) == 3 for columns in lines)
  with open(summary["predict"]["jsonl"], encoding="utf-8") as reader:
    records = [json.loads(line) for line in reader]
  assert len(records) == 3453
  assert sum(len(r["tags"]) for r in records) == 46435
