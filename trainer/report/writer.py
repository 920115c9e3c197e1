"""Evaluation report of a run: `<output_dir>/report.html`.

    python -m trainer.report OUTPUT_DIR

builds (or rebuilds) the page from the files a run leaves in OUTPUT_DIR:

  ``eval_predictions.conll``  dev-set ``token gold predicted`` lines
                             (--do_eval): dev scores and error analysis;
  ``eval_results.txt``       the estimator's dev scores; shown when the dev
                             predictions are absent, else checked against them;
  ``predictions.conll``      --do_predict output; analysed when labelled;
  ``predict_results.txt``    its scores, checked against the analysis;
  event files (``.``, ``eval*/``) or ``training_log.csv``: training curves;
  ``run_config.json``, ``bert_config.json``, ``labels.txt``, ``checkpoint``,
  ``ner_config.json`` (here or in the newest ``export*/N/assets.extra``):
                             the run's settings.

Every input is optional; the page says what was missing. The page itself is
one self-contained HTML file (`report_html`). Only the curve reader touches
TensorFlow (`report_curves.read_event_scalars`, imported lazily); everything
else here is pure Python.
"""

import argparse
import glob
import json
import os
import sys
from typing import Any, Optional, Sequence

from trainer.report import analysis as report_analysis
from trainer.report import curves as report_curves
from trainer.report import page as report_html
from trainer.report import plots as report_plots
from trainer import schema

# Figures from two files agree when they differ by less than this
# (predict_results.txt rounds to 4 places).
AGREEMENT_TOLERANCE = 6e-5


def can_write_report(output_dir: str) -> bool:
  """True for local folders (the report reads with plain file access)."""
  return "://" not in output_dir


def _read_lines(path: str) -> Optional[list[str]]:
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as reader:
    return reader.readlines()


def _read_json(path: str) -> Optional[dict[str, Any]]:
  lines = _read_lines(path)
  return None if lines is None else json.loads("".join(lines))


def _disagreements(computed: dict[str, Any], reference: dict[str, Any],
                   keys: dict[str, str], reference_name: str) -> list[str]:
  """Warnings for figures that differ between analysis and results file."""
  problems = []
  for computed_key, reference_key in keys.items():
    value = reference.get(reference_key)
    if isinstance(value, (int, float)) and abs(
        value - computed[computed_key]) > AGREEMENT_TOLERANCE:
      problems.append(
          f"{reference_name} has {reference_key} = {value}, but the "
          f"per-sentence predictions give {computed[computed_key]:.4f}; the "
          f"two files may come from different checkpoints.")
  return problems


def _labelled_set(output_dir: str, key: str, title: str, conll_name: str,
                  results_name: str, result_keys: dict[str, str],
                  notes: list[str]) -> Optional[report_html.EvalSet]:
  """The analysed set of one prediction file, or None (with a note)."""
  conll_path = os.path.join(output_dir, conll_name)
  lines = _read_lines(conll_path)
  if lines is None:
    return None
  sentences = report_analysis.read_prediction_conll(lines, conll_path)
  if sentences is None:
    notes.append(f"{conll_name} holds no gold tags (unlabelled input), so it "
                 f"is not scored.")
    return None
  analysis = report_analysis.analyze(sentences)
  reference_lines = _read_lines(os.path.join(output_dir, results_name))
  warnings = []
  if reference_lines is not None:
    warnings = _disagreements(
        analysis.metrics, report_analysis.read_key_values(reference_lines),
        result_keys, results_name)
  return report_html.EvalSet(key, title, conll_name, analysis.metrics,
                             analysis, warnings)


def eval_sets(output_dir: str, notes: list[str]) -> list[report_html.EvalSet]:
  """Dev set (predictions, else eval_results.txt) and labelled test set."""
  sets = []
  dev = _labelled_set(
      output_dir, "dev", "Dev set", schema.EVAL_PREDICTIONS_CONLL_FILENAME,
      schema.EVAL_RESULTS_FILENAME,
      {key: f"entity_{key}" for key in ("precision", "recall", "f1")}, notes)
  if dev is None:
    lines = _read_lines(os.path.join(output_dir, schema.EVAL_RESULTS_FILENAME))
    if lines is not None:
      dev = report_html.EvalSet(
          "dev", "Dev set", schema.EVAL_RESULTS_FILENAME,
          report_analysis.metrics_from_eval_results(
              report_analysis.read_key_values(lines)))
      notes.append(f"No {schema.EVAL_PREDICTIONS_CONLL_FILENAME}: dev figures come "
                   f"from {schema.EVAL_RESULTS_FILENAME}, without support or "
                   f"error analysis.")
  if dev is not None:
    sets.append(dev)
  test = _labelled_set(
      output_dir, "test", "Test set (labelled predictions)",
      schema.PREDICTIONS_CONLL_FILENAME, schema.PREDICT_RESULTS_FILENAME,
      {key: key for key in ("precision", "recall", "f1")}, notes)
  if test is not None:
    sets.append(test)
  return sets


def _newest_export_ner_config(output_dir: str) -> Optional[str]:
  candidates = [os.path.join(output_dir, schema.NER_CONFIG_FILENAME)] + sorted(
      glob.glob(os.path.join(output_dir, "export*", "*",
                             schema.ASSETS_EXTRA_DIRNAME,
                             schema.NER_CONFIG_FILENAME)),
      key=lambda path: (os.path.getmtime(path), path), reverse=True)
  return next((path for path in candidates if os.path.exists(path)), None)


def run_settings(output_dir: str) -> list[tuple[str, list[tuple[str, Any]]]]:
  """[(group title, [(name, value)])] from the run's settings files."""
  groups = []
  run_config = _read_json(os.path.join(output_dir, schema.RUN_CONFIG_FILENAME))
  if run_config:
    groups.append((f"Run ({schema.RUN_CONFIG_FILENAME})", list(run_config.items())))
  checkpoint = []
  eval_lines = _read_lines(os.path.join(output_dir,
                                        schema.EVAL_RESULTS_FILENAME))
  if eval_lines is not None:
    step = report_analysis.read_key_values(eval_lines).get("global_step")
    if step is not None:
      checkpoint.append(("evaluated at step", step))
  for line in _read_lines(os.path.join(output_dir, "checkpoint")) or []:
    name, _, value = line.partition(":")
    if name.strip() == "model_checkpoint_path":
      checkpoint.append(("latest checkpoint", value.strip().strip('"')))
  if checkpoint:
    groups.append(("Checkpoint", checkpoint))
  bert_config = _read_json(os.path.join(output_dir,
                                        schema.BERT_CONFIG_FILENAME))
  if bert_config:
    groups.append((f"Model ({schema.BERT_CONFIG_FILENAME})",
                   list(bert_config.items())))
  ner_config_path = _newest_export_ner_config(output_dir)
  if ner_config_path:
    groups.append((f"Serving config "
                   f"({os.path.relpath(ner_config_path, output_dir)})",
                   list(_read_json(ner_config_path).items())))
  labels = _read_lines(os.path.join(output_dir, schema.LABELS_FILENAME))
  if labels:
    groups.append((f"Labels ({schema.LABELS_FILENAME})",
                   [("labels", " ".join(l.strip() for l in labels
                                        if l.strip()))]))
  return groups


def build_report(output_dir: str) -> report_html.ReportData:
  """Reads every input of the report (see the module docstring)."""
  notes = []
  sets = eval_sets(output_dir, notes)
  curves_svg = report_plots.curves_svg(report_curves.read_curves(output_dir))
  return report_html.ReportData(output_dir, sets, curves_svg,
                                run_settings(output_dir), notes)


def write_report(output_dir: str, path: Optional[str] = None) -> str:
  """Writes `<output_dir>/report.html` (or `path`); returns its path.

  Raises:
    ValueError: if `output_dir` is not a local folder, or an input file is
      malformed (the message names the file and line).
  """
  if not can_write_report(output_dir):
    raise ValueError(f"Cannot write a report for {output_dir!r}: the report "
                     f"reads local files only. Copy the run folder locally "
                     f"and run: python -m trainer.report LOCAL_DIR")
  if not os.path.isdir(output_dir):
    raise ValueError(f"{output_dir!r} is not a folder; pass the "
                     f"--output_dir of a run.")
  page = report_html.render_report(build_report(output_dir))
  path = path or os.path.join(output_dir, schema.REPORT_FILENAME)
  with open(path, "w", encoding="utf-8") as writer:
    writer.write(page)
  return path


def main(argv: Optional[Sequence[str]] = None) -> int:
  """CLI: python -m trainer.report OUTPUT_DIR [--output PATH]."""
  parser = argparse.ArgumentParser(
      prog="python -m trainer.report",
      description="Write the evaluation report (report.html) of a run.")
  parser.add_argument("output_dir", help="the --output_dir of the run")
  parser.add_argument("--output", default=None,
                      help=f"where to write (default OUTPUT_DIR/"
                           f"{schema.REPORT_FILENAME})")
  args = parser.parse_args(argv)
  try:
    path = write_report(args.output_dir, args.output)
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  print(path)
  return 0

