"""Tests for trainer.report.assets: type colours, inline CSS and JavaScript."""

import re

from trainer import palette
from trainer.report import assets as report_assets


def test_type_colors_are_ten_distinct_hex_pairs():
  colors = palette.TYPE_COLORS
  assert len(colors) == 10
  assert len(set(colors)) == 10
  for background, border in colors:
    assert re.fullmatch(r"#[0-9a-f]{6}", background), background
    assert re.fullmatch(r"#[0-9a-f]{6}", border), border


def test_type_color_css_one_class_per_color():
  lines = palette.type_color_css().split("\n")
  assert len(lines) == 10
  assert lines[0] == ".c0 { --ent-bg: #dbeafe; --ent-border: #3b82f6; }"
  assert lines[1] == ".c1 { --ent-bg: #dcfce7; --ent-border: #22c55e; }"
  assert lines[9] == ".c9 { --ent-bg: #f1f5f9; --ent-border: #64748b; }"
  assert [line.split(" ")[0] for line in lines] == [
      f".c{i}" for i in range(10)]


def test_css_uses_the_variables_the_color_classes_set():
  assert "var(--ent-bg)" in report_assets.CSS
  assert "var(--ent-border)" in report_assets.CSS
  assert report_assets.CSS.count("{") == report_assets.CSS.count("}")


def test_css_styles_the_classes_the_page_uses():
  classes = set(re.findall(r"\.([a-z][\w-]*)", report_assets.CSS))
  for name in ("swatch", "ent", "err", "ent-type", "cell-link", "zero",
               "diag", "off", "kind", "sentence", "sentence-head", "tagged",
               "who", "warning", "kpis", "kpi", "filters", "count",
               "settings-groups", "table-scroll", "curves", "note"):
    assert name in classes, name


def test_js_hooks():
  js = report_assets.JS
  assert sorted(set(re.findall(r"\[data-role=([\w-]+)\]", js))) == [
      "filter-kind", "filter-type", "shown-count"]
  assert "document.querySelectorAll('.sentence-browser')" in js
  assert "document.querySelectorAll('button.cell-link')" in js
  assert "button.dataset.set + '-sentences'" in js
  for opening, closing in ("()", "{}", "[]"):
    assert js.count(opening) == js.count(closing), opening
  assert "http" not in js and "http" not in report_assets.CSS
