"""Tests for trainer.report.page: tables, sentence items and the page frame."""

from trainer.report import analysis as ra
from trainer.report import page as rh


def _slice(page, start, end):
  """The first part of `page` from `start` through the next `end`."""
  begin = page.index(start)
  return page[begin:page.index(end, begin) + len(end)]


def _dev_set():
  sentences = [
      ra.LabelledSentence(("John", "Smith", "visited", "Paris"),
                          ("B-PER", "I-PER", "O", "B-LOC"),
                          ("B-PER", "I-PER", "O", "B-ORG"), 0, 1),
      ra.LabelledSentence(("<b>", "Rome"), ("O", "B-LOC"), ("B-PER", "O"),
                          1, 6)]
  analysis = ra.analyze(sentences)
  return rh.EvalSet("dev", "Dev set", "dev.conll", analysis.metrics, analysis)


def test_escape():
  assert rh.escape("<a href=\"x\">&'") == (
      "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;")
  assert rh.escape(0.5) == "0.5"


def test_metrics_table_without_analysis():
  metrics = {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "per_type": {
      "PER": {"precision": 0.5, "recall": 1, "f1": 2 / 3, "support": None}}}
  page = rh.render_report(rh.ReportData(
      "run", [rh.EvalSet("test", "Test set", "t.txt", metrics,
                         warnings=["a < b"])], curves_svg="<svg></svg>"))
  assert _slice(page, '<tr data-type="PER">', "</tr>") == (
      '<tr data-type="PER"><th><span class="swatch c0"></span>PER</th>'
      '<td data-metric="precision" data-value="0.5">0.5000</td>'
      '<td data-metric="recall" data-value="1">1</td>'
      '<td data-metric="f1" data-value="0.6666666666666666">0.6667</td>'
      '<td data-metric="support">—</td></tr>')
  assert _slice(page, '<tr class="overall"', "</tr>").endswith(
      '<td data-metric="support">—</td></tr>')
  assert ('<p class="note">No per-sentence predictions for this set, so no '
          "error analysis.</p>") in page
  assert 'id="test-outcomes"' not in page
  assert ('<p class="note">Figures from <code>t.txt</code>.</p>'
          '<div class="warning">a &lt; b</div><div class="kpis">') in page
  assert '<div class="curves"><svg></svg></div>' in page


def test_outcome_cells_link_to_sentences():
  page = rh.render_report(rh.ReportData("run", [_dev_set()]))
  assert _slice(page, '<tr class="total"', "</tr>") == (
      '<tr class="total" data-row="total"><th>all types</th>'
      '<td data-outcome="correct">1</td>'
      '<td data-outcome="wrong_type"><button class="cell-link" data-set="dev" '
      'data-kind="wrong_type" data-type="all" title="show these sentences">1'
      "</button></td>"
      '<td data-outcome="wrong_boundary" class="zero">0</td>'
      '<td data-outcome="wrong_type_and_boundary" class="zero">0</td>'
      '<td data-outcome="missed"><button class="cell-link" data-set="dev" '
      'data-kind="missed" data-type="all" title="show these sentences">1'
      "</button></td>"
      '<td data-outcome="spurious"><button class="cell-link" data-set="dev" '
      'data-kind="spurious" data-type="all" title="show these sentences">1'
      "</button></td></tr>")
  # Types sorted LOC, ORG, PER -> colours c0, c1, c2; "" is "none".
  assert _slice(page, '<tr data-gold="">', "</tr>") == (
      '<tr data-gold=""><th><span class="none">none</span></th>'
      '<td data-pred="LOC" class="zero">0</td>'
      '<td data-pred="ORG" class="zero">0</td>'
      '<td data-pred="PER" class="off">1</td>'
      '<td data-pred="" class="zero"></td></tr>')
  assert 'id="dev-sentences-with-errors">2 / 2<' in page


def test_sentence_item_escapes_tokens_and_describes_errors():
  page = rh.render_report(rh.ReportData("run", [_dev_set()]))
  item = _slice(page, '<li class="sentence" data-errors="missed:LOC',
                "</li></ul></li>")
  assert item == (
      '<li class="sentence" data-errors="missed:LOC spurious:PER" '
      'data-index="1" data-error-count="2"><div class="sentence-head">'
      "sentence 2 (dev.conll:6) \u00b7 2 errors</div>"
      '<div class="tagged"><span class="who">gold</span>'
      '<span class="text gold">&lt;b&gt; <mark class="ent c0 err" '
      'data-type="LOC" title="gold LOC: missed">Rome'
      '<span class="ent-type">LOC</span></mark></span>'
      '<span class="who">pred</span><span class="text pred">'
      '<mark class="ent c2 err" data-type="PER" title="predicted PER: error">'
      '&lt;b&gt;<span class="ent-type">PER</span></mark> Rome</span></div>'
      '<ul class="errors"><li data-kind="spurious" data-type="PER">'
      '<span class="kind">spurious</span>PER \u201c&lt;b&gt;\u201d predicted '
      "where gold has no entity</li>"
      '<li data-kind="missed" data-type="LOC"><span class="kind">missed'
      "</span>LOC \u201cRome\u201d not found</li></ul></li>")
  assert ('<li data-kind="wrong_type" data-type="LOC"><span class="kind">'
          "wrong type</span>LOC \u201cParis\u201d predicted as ORG</li>") in page
  assert "<b>" not in page


def test_long_sentence_lists_are_cut(monkeypatch):
  monkeypatch.setattr(rh, "MAX_SENTENCES_SHOWN", 1)
  page = rh.render_report(rh.ReportData("run", [_dev_set()]))
  assert ('<p class="note">Showing the 1 worst of 2 sentences with errors.'
          "</p>") in page
  assert page.count('<li class="sentence"') == 1
  assert ('<span id="dev-shown-count" data-role="shown-count">1</span> of 1 '
          "sentences shown") in page


def test_tagged_text_docstring_example():
  marked = [(ra.Span("LOC", 0, 1), False, "gold LOC: correct")]
  assert rh._tagged_text(["Rome", "<3"], ["", " "], marked, {}) == (
      '<mark class="ent c0" data-type="LOC" title="gold LOC: correct">Rome'
      '<span class="ent-type">LOC</span></mark> &lt;3')
  assert rh._token_gaps(["EU", "rejects", "it"]) == ["", " ", " "]
  assert rh._token_gaps(["北", "京", "人"]) == ["", "", ""]


def test_empty_report_frame_and_settings():
  page = rh.render_report(rh.ReportData("<run>", [], settings=[
      ("Model", [("layers", [1, 2]), ("name", "<b>"),
                 ("extra", {"lang": "中文"})])], notes=["no dev file"]))
  assert page.startswith("<!DOCTYPE html>\n")
  assert page.endswith("</script></body></html>\n")
  assert "<title>NER evaluation report \u2014 &lt;run&gt;</title>" in page
  assert ('<nav class="toc"><a href="#curves">Training curves</a>'
          '<a href="#settings">Settings</a></nav>') in page
  assert ('<section class="card" id="notes"><ul class="note"><li>no dev file'
          "</li></ul></section>") in page
  assert "<h2>No scores</h2>" in page
  assert "No training curves: the run left no event files or CSV log." in page
  assert ('<div><h3>Model</h3><dl class="settings"><dt>layers</dt>'
          "<dd>[1, 2]</dd><dt>name</dt><dd>&lt;b&gt;</dd><dt>extra</dt>"
          "<dd>{&quot;lang&quot;: &quot;中文&quot;}</dd></dl></div>") in page
  assert "The run left no settings files." in rh.render_report(
      rh.ReportData("run", []))
