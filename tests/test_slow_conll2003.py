"""Slow: a short real run on CoNLL-2003 from ../shared/data (not committed)."""

import json

from trainer.run import train_lib
from tests import real_data

CONLL_DIR = real_data.CONLL_DIR
pytestmark = real_data.CONLL_MARKS


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
