"""Tests for trainer.report.plots: which panels are drawn, and the SVG."""

import re

from trainer.report import plots as report_plots


def _texts(svg):
  """The SVG's text elements (svg.fonttype none keeps text as text)."""
  return re.findall(r">([^<>\n]+)</text>", svg)


def test_panels_with_data_keeps_panel_order_and_sorts_points():
  curves = {"train": {"loss": {5: 1.0, 1: 2.0}, "learning_rate": {}},
            "eval": {"entity_recall": {5: 0.6}, "entity_f1": {5: 0.5}}}
  assert report_plots._panels_with_data(curves) == [
      ("Loss", [("train (per step)", "line", [(1, 2.0), (5, 1.0)])]),
      ("Dev entity F1", [("F1", "both", [(5, 0.5)]),
                         ("recall", "dotted", [(5, 0.6)])])]


def test_panels_with_data_tolerates_missing_phases():
  assert report_plots._panels_with_data({}) == []
  assert report_plots._panels_with_data(
      {"eval": {"loss": {3: 0.25}}}) == [
          ("Loss", [("dev (per evaluation)", "marker", [(3, 0.25)])])]


def test_curves_svg_is_none_without_data():
  assert report_plots.curves_svg({}) is None
  assert report_plots.curves_svg(
      {"train": {"loss": {}}, "eval": {"accuracy": {1: 0.5}}}) is None


def test_one_panel_svg_size_ticks_and_no_legend():
  svg = report_plots.curves_svg(
      {"train": {"learning_rate": {10: 5e-05, 1: 1e-4}}})
  # figsize 3.6 x 2.6 inches per panel at 72 pt per inch.
  assert svg.startswith('<svg xmlns:xlink="http://www.w3.org/1999/xlink" '
                        'width="259.2pt" height="187.2pt" '
                        'viewBox="0 0 259.2 187.2"')
  texts = _texts(svg)
  assert texts[0] == "0"  # the x axis starts at step 0
  assert "5e-05" in texts and "0.0001" in texts  # "{:.3g}", no offset label
  assert texts[-1] == "Learning rate"
  assert "learning rate" not in texts  # one series: no legend
  assert "dc:date" not in svg and "stroke: #2563eb" in svg


def test_two_panel_svg_has_legends_and_series_colors():
  svg = report_plots.curves_svg(
      {"train": {"loss": {1: 2.0, 5: 1.0}},
       "eval": {"loss": {5: 1.5}, "entity_f1": {5: 0.5}}})
  assert 'width="518.4pt" height="187.2pt"' in svg
  assert svg.count('<g id="axes_') == 2
  texts = _texts(svg)
  for text in ("Loss", "train (per step)", "dev (per evaluation)",
               "Dev entity F1"):
    assert texts.count(text) == 1, text
  assert "F1" not in texts  # the F1 panel has one series: no legend
  assert "stroke: #2563eb" in svg and "fill: #dc2626" in svg
