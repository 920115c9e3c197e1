"""BERT named-entity recognition: train, evaluate, predict and export.

    python run_ner.py --do_train --do_eval --do_predict --do_export

With no data or model flags it trains a tiny BERT on the embedded Chinese
sample. With a Google-format checkpoint:

    python run_ner.py --data_dir DATA --bert_config_file ckpt/bert_config.json \
        --vocab_file ckpt/vocab.txt --init_checkpoint ckpt/bert_model.ckpt \
        --output_dir out --do_train --do_eval --do_predict --do_export

Flags, checks and the work live in the `trainer` package (`trainer.run.cli`,
`trainer.run.config`, `trainer.run.train_lib`); `python -m trainer.task` is the
same command. `python run_ner.py --helpfull` lists every flag.
"""

from trainer.run.cli import run_main  # noqa: F401  (the `run-ner` console script)

if __name__ == "__main__":
  run_main()
