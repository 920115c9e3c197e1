"""Export layer: the SavedModel TF Serving loads (`exporter`), numbered
version folders (`export_versions`), in-graph checks of served inputs
(`serving_checks`) and the in-graph character tokenizer of `predict_text`
(`text_signature`). Imports base, data, model and features."""
