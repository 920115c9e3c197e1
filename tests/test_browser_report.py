"""report.html of a real tiny run, opened in headless Chromium.

Trains the tiny from-scratch BERT on the embedded sample for a few steps
through the CLI (the stable entry point), evaluates on the dev file and
predicts the same dev file, so the page's dev figures (from the run's
eval_results.txt or eval_predictions.conll) and its test-set figures (the
report's own analysis of predictions.conll) must both equal the estimator's
eval_results.txt. Then it drives the sentence filters and saves screenshots
under the test's tmp folder. Skips without Chromium, chromedriver or selenium.
"""

import os
import subprocess
import sys


from tests import browser
from trainer import schema
from trainer.report import analysis as report_analysis
from trainer.report import page as report_html
from trainer.data.sample_data import sample_data_dir

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_STEPS = 120
# eval_results.txt holds float32 values; the page shows 4 places.
SHOWN_PLACES_TOLERANCE = 0.5e-4 + 1e-6


def _train_tiny_run(output_dir):
  data = sample_data_dir()
  command = [
      sys.executable, "run_ner.py", "--do_train", "--do_eval", "--do_predict",
      "--train_file", os.path.join(data, "train.txt"),
      "--eval_file", os.path.join(data, "dev.txt"),
      "--predict_file", os.path.join(data, "dev.txt"),
      "--num_train_steps", str(TRAIN_STEPS), "--learning_rate", "5e-4",
      "--train_batch_size", "16", "--output_dir", str(output_dir)]
  result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]


def _shown(driver, css):
  return driver.find_element("css selector", css).text


def _check_figures(driver, set_key, eval_results):
  """Overall and per-type P/R/F1 of `set_key` equal eval_results.txt."""
  types = sorted({key[len("entity_"):].rpartition("_")[0]
                  for key in eval_results
                  if key.startswith("entity_") and key.count("_") >= 2})
  assert types, eval_results
  rows = [("overall", "tr[data-row=overall]")] + [
      (t, f"tr[data-type='{t}']") for t in types]
  for name, row in rows:
    for metric in ("precision", "recall", "f1"):
      key = (f"entity_{metric}" if name == "overall"
             else f"entity_{name}_{metric}")
      shown = _shown(driver, f"#{set_key}-metrics {row} "
                             f"td[data-metric={metric}]")
      assert abs(float(shown) - eval_results[key]) <= SHOWN_PLACES_TOLERANCE, (
          set_key, key, shown, eval_results[key])
  assert abs(float(_shown(driver, f"#{set_key}-overall-f1"))
             - eval_results["entity_f1"]) <= SHOWN_PLACES_TOLERANCE


def _visible_sentences(driver, set_key):
  return driver.execute_script(
      "return Array.from(document.querySelectorAll("
      f"'#{set_key}-sentences li.sentence')).filter(li => !li.hidden)"
      ".map(li => li.dataset.index);")


def _check_filters(driver, output_dir):
  """Filtering by kind and type shows what the Python analysis expects."""
  # pylint: disable-next=g-import-not-at-top
  from selenium.webdriver.support import ui
  path = os.path.join(output_dir, "predictions.conll")
  with open(path, encoding="utf-8") as reader:
    analysis = report_analysis.analyze(
        report_analysis.read_prediction_conll(reader, path))
  listed = analysis.sentences[:report_html.MAX_SENTENCES_SHOWN]
  def expected(kind, entity_type):
    return [str(item.sentence.index) for item in listed if any(
        (kind == "all" or o.kind == kind)
        and (entity_type == "all" or o.entity_type == entity_type)
        for o in item.errors)]
  assert _visible_sentences(driver, "test") == expected("all", "all")
  # The kind/type pair with most sentences, so the check cannot be vacuous.
  kind, entity_type = max(
      ((k, t) for k in report_analysis.ERROR_KINDS
       for t in analysis.entity_types), key=lambda pair: len(expected(*pair)))
  assert expected(kind, entity_type)
  ui.Select(driver.find_element("id", "test-filter-kind")).select_by_value(kind)
  ui.Select(driver.find_element("id", "test-filter-type")).select_by_value(
      entity_type)
  assert _visible_sentences(driver, "test") == expected(kind, entity_type)
  assert _shown(driver, "#test-shown-count") == str(
      len(expected(kind, entity_type)))
  hidden = set(expected("all", "all")) - set(expected(kind, entity_type))
  if hidden:
    item = driver.find_element(
        "css selector", f"#test-sentences li[data-index='{min(hidden)}']")
    assert not item.is_displayed()
  # A count in the outcome table sets both filters.
  button = driver.find_element(
      "css selector", "#test-outcomes tr[data-row=total] button.cell-link")
  button.click()
  kind = button.get_attribute("data-kind")
  assert driver.find_element("id", "test-filter-kind").get_attribute(
      "value") == kind
  assert _visible_sentences(driver, "test") == expected(kind, "all")
  ui.Select(driver.find_element("id", "test-filter-kind")).select_by_value(
      "all")


def test_report_of_a_tiny_run_in_chromium(tmp_path):
  browser.require_browser()
  output_dir = tmp_path / "run"
  _train_tiny_run(output_dir)
  page = output_dir / schema.REPORT_FILENAME
  assert page.exists(), "the run phases write report.html themselves"
  with open(output_dir / "eval_results.txt", encoding="utf-8") as reader:
    eval_results = report_analysis.read_key_values(reader)

  with browser.chromium(tmp_path) as driver:
    driver.get(page.as_uri())
    assert driver.title.startswith("NER evaluation report")
    driver.save_screenshot(str(tmp_path / "report_top.png"))
    # Self-contained: the page fetched nothing.
    assert driver.execute_script(
        "return performance.getEntriesByType('resource').length;") == 0
    _check_figures(driver, "dev", eval_results)
    _check_figures(driver, "test", eval_results)  # predictions of dev.txt
    assert driver.find_elements("css selector", "#curves svg")
    _check_filters(driver, str(output_dir))
    browser.full_page_screenshot(driver, str(tmp_path / "report.png"))
  for name in ("report_top.png", "report.png"):
    with open(tmp_path / name, "rb") as reader:
      assert reader.read(8) == b"\x89PNG\r\n\x1a\n"
