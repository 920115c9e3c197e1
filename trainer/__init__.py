"""BERT named-entity recognition on the TensorFlow Estimator API.

A folder per layer; a module imports its own layer and the ones listed above
it here, never one below (tests/test_layers.py fails on an upward import):

  trainer/            base: `schema` (every name), `errors`, `gfile_io`,
                      `cpu_features`, `tf_compat` (bert on TF 2), `durations`,
                      `palette`
  trainer/data/       files to sentences: readers, tag schemes, labels (pure)
  trainer/model/      heads, CRF, BiLSTM, fused ops, optimizer (TF graph code)
  trainer/features/   sentences to windows, tokenization, context, tf.data,
                      the encoder-feature cache
  trainer/evaluation/ entity metrics and predictions files (pure)
  trainer/training/   model_fn, Estimator construction, hooks
  trainer/export/     the SavedModel, its versions and in-graph input checks
  trainer/report/     report.html (`python -m trainer.report RUN_DIR`)
  trainer/convert/    Hugging Face to Google checkpoint conversion
  trainer/run/        flags, `NerConfig`, the run's inputs and phases (top)

Commands: `python run_ner.py` and `python -m trainer.task` (both
`trainer.run.cli.run_main`), `python -m trainer.report`,
`python -m trainer.convert_checkpoint`.
"""
