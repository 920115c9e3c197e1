"""Tests for serving.demo.page: the template and its inline script."""

import re

import pytest

from tests.import_checks import assert_imports_without_tensorflow
from serving.demo import page as demo_page

ARGS = {"model": "ner", "version": "version 3", "notice": "",
        "notice_hidden": " hidden", "max_chars": "5,000",
        "config_json": '{"a": 1}', "endpoint": "/demo/entities"}


def test_render_fills_every_field():
  page = demo_page.render(**ARGS)
  assert page.startswith("<!DOCTYPE html>\n")
  assert page.endswith("</script>\n</body>\n</html>\n")
  for needle in (
      "<title>NER demo: ner</title>",
      '<b id="model-name">ner</b>',
      '<span id="model-version">version 3</span>',
      '<span id="char-count">0 / 5,000 characters</span>',
      '<div id="notice" class="banner notice" role="status" hidden></div>',
      '<script type="application/json" id="demo-config">{"a": 1}</script>',
      "<code>POST /demo/entities</code>",
      'placeholder="e.g. 张三在北京的蓝海科技有限公司工作。"',
      "<style>.c0 { --ent-bg: #dbeafe; --ent-border: #3b82f6; }"):
    assert needle in page, needle
  assert "$" not in page


def test_render_shows_a_notice():
  page = demo_page.render(**{**ARGS, "notice": "old &amp; slow",
                             "notice_hidden": ""})
  assert ('<div id="notice" class="banner notice" role="status">old &amp; '
          "slow</div>") in page


def test_values_are_inserted_verbatim_once():
  # render trusts its (already escaped) arguments and does not substitute
  # placeholders inside them.
  page = demo_page.render(**{**ARGS, "model": "$css <i>"})
  assert "<title>NER demo: $css <i></title>" in page


def test_example_buttons():
  page = demo_page.render(**ARGS)
  assert page.count('<button type="button" class="example"') == 2
  text = "John Smith works for Acme Corp in London."
  assert (f'<button type="button" class="example" data-text="{text}" '
          f'title="{text}">{text}</button>') in page


def test_missing_argument_is_refused():
  args = dict(ARGS)
  del args["endpoint"]
  with pytest.raises(TypeError, match="endpoint"):
    demo_page.render(**args)


def test_script_colors_and_element_ids():
  assert "NUM_COLORS" not in demo_page.JS
  assert "return 'c' + (index % 10);" in demo_page.JS
  assert "innerHTML" not in demo_page.JS
  page = demo_page.render(**ARGS)
  ids = set(re.findall(r"getElementById\('([\w-]+)'\)", demo_page.JS))
  assert ids == {"demo-config", "demo-form", "text", "submit", "char-count",
                 "notice", "message", "result", "highlighted", "legend",
                 "entities", "no-entities", "result-meta"}
  for element_id in ids:
    assert page.count(f'id="{element_id}"') == 1, element_id


def test_demo_page_does_not_import_tensorflow():
  assert_imports_without_tensorflow("serving.demo.page")
