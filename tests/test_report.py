"""Tests for trainer.report.writer: the page's figures, escaping, settings and
CLI.
"""

import json
import os
import subprocess
import sys

import pytest

from tests import report_fixtures
from tests.report_fixtures import parse_html
from trainer.report import writer as report
from trainer.report import analysis as ra

CSV_LOG = ("step,loss,learning_rate,eval_entity_f1\n1,2.0,0.001,\n"
           "20,0.5,0.0005,0.4\n")


def _page(output_dir):
  path = report.write_report(str(output_dir))
  assert path == os.path.join(str(output_dir), "report.html")
  with open(path, encoding="utf-8") as reader:
    return reader.read()


def _metric(dom, set_key, row, metric):
  table = dom.find("table", id=f"{set_key}-metrics")
  tr = (table.find("tr", data_row="overall") if row == "overall"
        else table.find("tr", data_type=row))
  return tr.find("td", data_metric=metric).text


def test_dev_figures_outcomes_and_confusion(tmp_path):
  result = report_fixtures.write_run(tmp_path)
  dom = parse_html(_page(tmp_path))
  # Gold: PER 2, LOC 2, ORG 1; predicted: PER 2, LOC 2, ORG 1; 2 correct.
  assert _metric(dom, "dev", "overall", "f1") == f"{result['f1']:.4f}"
  assert _metric(dom, "dev", "overall", "precision") == "0.4000"
  assert _metric(dom, "dev", "overall", "recall") == "0.4000"
  assert _metric(dom, "dev", "overall", "support") == "5"
  assert _metric(dom, "dev", "overall", "predicted") == "5"
  assert [_metric(dom, "dev", t, "f1") for t in ("LOC", "ORG", "PER")] == [
      "0.5000", "0.0000", "0.5000"]
  assert [_metric(dom, "dev", t, "support") for t in ("LOC", "ORG", "PER")] == [
      "2", "1", "2"]
  assert dom.find(id="dev-overall-f1").text == "0.4000"
  outcomes = dom.find("table", id="dev-outcomes")
  def counts(row):
    return {o: row.find("td", data_outcome=o).text for o in ra.OUTCOMES}
  assert counts(outcomes.find("tr", data_type="LOC")) == {
      "correct": "1", "wrong_type": "1", "wrong_boundary": "0",
      "wrong_type_and_boundary": "0", "missed": "0", "spurious": "1"}
  assert counts(outcomes.find("tr", data_row="total")) == {
      "correct": "2", "wrong_type": "1", "wrong_boundary": "1",
      "wrong_type_and_boundary": "0", "missed": "1", "spurious": "1"}
  confusion = dom.find("table", id="dev-confusion")
  assert [[td.text for td in tr.find_all("td")]
          for tr in confusion.find_all("tr") if "data-gold" in tr.attrs] == [
              ["1", "1", "0", "0"], ["0", "0", "0", "1"],
              ["0", "0", "2", "0"], ["1", "0", "0", ""]]
  items = dom.find(id="dev-sentences").find_all("li", **{"class": "sentence"})
  assert [li.attrs["data-errors"] for li in items] == [
      "missed:ORG spurious:LOC wrong_boundary:PER", "wrong_type:LOC"]
  assert dom.find(id="dev-shown-count").text == "2"
  assert not dom.find_all(**{"class": "warning"})


def test_html_escapes_tokens_types_and_paths(tmp_path):
  predictions = "R&D B-R&D\"x O\n<b> O B-R&D\"x\n\n"
  output_dir = tmp_path / "run <&>"
  report_fixtures.write_run(output_dir, predictions=predictions)
  page = _page(output_dir)
  assert "<script>alert(1)</script>" not in page
  assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
  assert page.count("<script>") == 1  # only the page's own filter script
  assert "AT&amp;T" in page and "&quot;Bob&quot;" in page
  assert 'data-type="R&amp;D&quot;x"' in page and "<b>" not in page
  assert "run &lt;&amp;&gt;" in page
  dom = parse_html(page)
  # The parser unescapes attributes: the type survives intact.
  assert dom.find("table", id="test-metrics").find(
      "tr", data_type='R&D"x').find("td", data_metric="support").text == "1"


def test_dev_figures_from_eval_results_without_predictions(tmp_path):
  report_fixtures.write_run(tmp_path, eval_predictions=None, eval_results=(
      "entity_LOC_f1 = 0.6056337952613831\n"
      "entity_LOC_precision = 0.5657894611358643\n"
      "entity_LOC_recall = 0.6515151262283325\n"
      "entity_f1 = 0.5977011322975159\nentity_precision = 0.5416666865348816\n"
      "entity_recall = 0.6666666865348816\nglobal_step = 1000\n"))
  page = _page(tmp_path)
  dom = parse_html(page)
  assert _metric(dom, "dev", "overall", "f1") == "0.5977"
  assert _metric(dom, "dev", "LOC", "precision") == "0.5658"
  assert _metric(dom, "dev", "LOC", "support") == "\u2014"
  assert dom.find_all(id="dev-outcomes") == []
  assert "No eval_predictions.conll" in dom.find(id="notes").text
  assert dom.find_all(id="test") == []


def test_disagreeing_results_file_is_flagged(tmp_path):
  report_fixtures.write_run(tmp_path, eval_results="entity_f1 = 0.9\n")
  warning = parse_html(_page(tmp_path)).find(**{"class": "warning"}).text
  assert warning.startswith("eval_results.txt has entity_f1 = 0.9, but the "
                            "per-sentence predictions give 0.4000")


def test_test_set_checked_against_predict_results(tmp_path):
  predictions = "Rome B-LOC B-LOC\nis O B-LOC\n\n"
  report_fixtures.write_run(tmp_path, predictions=predictions, extra={
      "predict_results.txt": "precision = 0.5000\nrecall = 1.0000\n"
                             "f1 = 0.6667\n# table = 1\n"})
  dom = parse_html(_page(tmp_path))
  assert _metric(dom, "test", "overall", "f1") == "0.6667"
  assert _metric(dom, "test", "LOC", "predicted") == "2"
  assert not dom.find_all(**{"class": "warning"})


def test_unlabelled_predictions_are_noted_not_scored(tmp_path):
  report_fixtures.write_run(tmp_path, predictions="Rome B-LOC\n\n")
  dom = parse_html(_page(tmp_path))
  assert dom.find_all(id="test") == []
  assert "predictions.conll holds no gold tags" in dom.find(id="notes").text


def test_settings_and_curves_from_csv(tmp_path):
  ner_config = {"head": {"type": "crf"}, "max_seq_length": 64}
  report_fixtures.write_run(tmp_path, extra={
      "run_config.json": json.dumps({"head": "crf", "num_train_steps": 30,
                                     "train_file": "data/<train>.txt"}),
      "export/7/assets.extra/ner_config.json": json.dumps(ner_config),
      "checkpoint": 'model_checkpoint_path: "model.ckpt-30"\n',
      "training_log.csv": CSV_LOG})
  dom = parse_html(_page(tmp_path))
  settings = dom.find("section", id="settings")
  pairs = dict(zip([dt.text for dt in settings.find_all("dt")],
                   [dd.text for dd in settings.find_all("dd")]))
  assert pairs["num_train_steps"] == "30"
  assert pairs["train_file"] == "data/<train>.txt"
  assert pairs["head"] == '{"type": "crf"}'  # ner_config.json comes later
  assert pairs["evaluated at step"] == "30"
  assert pairs["latest checkpoint"] == "model.ckpt-30"
  assert pairs["num_hidden_layers"] == "1"
  assert pairs["labels"] == "O B-LOC B-ORG B-PER I-LOC I-ORG I-PER"
  assert "export/7/assets.extra/ner_config.json" in settings.text
  svg = dom.find("section", id="curves").find("svg")
  assert {"Loss", "Learning rate", "Dev entity F1"} <= {
      node.text for node in svg.iter() if node.tag == "text"}


def test_empty_folder_gives_a_page_that_says_so(tmp_path):
  dom = parse_html(_page(tmp_path))
  assert "Run with --do_eval" in dom.find("main").text
  assert "No training curves" in dom.find(id="curves").text


def test_remote_and_missing_folders_are_rejected(tmp_path):
  with pytest.raises(ValueError, match="reads local files only"):
    report.write_report("gs://bucket/run")
  with pytest.raises(ValueError, match="is not a folder"):
    report.write_report(str(tmp_path / "missing"))


def test_cli_rebuilds_the_report_without_tensorflow(tmp_path):
  report_fixtures.write_run(tmp_path, extra={"training_log.csv": CSV_LOG})
  code = ("import sys\nfrom trainer.report import writer as report\n"
          f"status = report.main([{str(tmp_path)!r}])\n"
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
          "sys.exit(status)\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, check=False)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == str(tmp_path / "report.html")
  result = subprocess.run(
      [sys.executable, "-m", "trainer.report", str(tmp_path / "missing")],
      capture_output=True, text=True, check=False)
  assert result.returncode == 1
  assert "error: " in result.stderr and "is not a folder" in result.stderr
