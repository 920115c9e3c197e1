"""Renders the evaluation report as one self-contained HTML page.

Inline CSS, SVG and JavaScript only: the page loads nothing at view time.
Every text from the run (tokens, types, file names, settings) is escaped.

Stable hooks for tests and scripts (KEY is an `EvalSet.key`, e.g. "dev"):
  ``#KEY-metrics``     rows ``tr[data-type=T]`` and ``tr[data-row=overall]``,
                       cells ``td[data-metric=precision|recall|f1|support|
                       predicted]`` (text rounded to 4 places, `data-value`
                       exact);
  ``#KEY-outcomes``    rows ``tr[data-type=T]``, ``tr[data-row=total]``, cells
                       ``td[data-outcome=<report_analysis.OUTCOMES>]``;
  ``#KEY-confusion``   rows ``tr[data-gold=T]``, cells ``td[data-pred=T]``
                       ("" is no entity);
  ``#KEY-sentences``   ``select#KEY-filter-kind``, ``select#KEY-filter-type``,
                       ``#KEY-shown-count``, ``li.sentence[data-errors]`` with
                       "kind:TYPE" items.

Pure Python: never imports TensorFlow.
"""

import dataclasses
import html
import json
from typing import Any, Optional, Sequence

from trainer.evaluation import predictions as predictions_lib
from trainer.report import analysis as analysis_lib
from trainer.report import assets as report_assets
from trainer import palette

METRIC_KEYS = ("precision", "recall", "f1")
# Sentences listed per set; the worst ones are kept.
MAX_SENTENCES_SHOWN = 1000


@dataclasses.dataclass
class EvalSet:
  """One scored set of the report.

  Attributes:
    key: id prefix in the page ("dev", "test").
    title: heading, e.g. "Dev set".
    source: the file its figures come from.
    metrics: `metrics.entity_metrics`-shaped dict (support may be None).
    analysis: the error analysis, None when only summary numbers exist.
    warnings: lines shown above the figures (e.g. disagreeing files).
  """
  key: str
  title: str
  source: str
  metrics: dict[str, Any]
  analysis: Optional[analysis_lib.Analysis] = None
  warnings: Sequence[str] = ()


@dataclasses.dataclass
class ReportData:
  """Everything on the page.

  Attributes:
    output_dir: the run folder.
    eval_sets: scored sets, in page order.
    curves_svg: inline SVG of the training curves, or None.
    settings: [(group title, [(name, value)])].
    notes: lines about inputs that were missing.
  """
  output_dir: str
  eval_sets: Sequence[EvalSet]
  curves_svg: Optional[str] = None
  settings: Sequence[tuple[str, Sequence[tuple[str, Any]]]] = ()
  notes: Sequence[str] = ()


def escape(value: Any) -> str:
  """HTML-escapes str(value), quotes included (safe in text and attributes)."""
  return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
  return "—" if value is None else (f"{value:.4f}" if isinstance(value, float)
                                    else str(value))


def _cell(value: Any, attribute: str, name: str) -> str:
  exact = "" if value is None else f' data-value="{escape(value)}"'
  zero = ' class="zero"' if value == 0 else ""
  return (f'<td {attribute}="{escape(name)}"{exact}{zero}>'
          f"{escape(_number(value))}</td>")


def _type_label(entity_type: str, colors: dict[str, int]) -> str:
  if entity_type == analysis_lib.NO_ENTITY:
    return '<span class="none">none</span>'
  return (f'<span class="swatch c{colors.get(entity_type, 0)}"></span>'
          f"{escape(entity_type)}")


def _metrics_table(eval_set: EvalSet, colors: dict[str, int]) -> str:
  metrics, analysis = eval_set.metrics, eval_set.analysis
  per_type = metrics.get("per_type", {})
  columns = METRIC_KEYS + ("support",) + (("predicted",) if analysis else ())
  rows = []
  for entity_type, scores in per_type.items():
    values = dict(scores)
    if analysis:
      values["predicted"] = analysis.predicted_counts.get(entity_type, 0)
    rows.append(f'<tr data-type="{escape(entity_type)}"><th>'
                f"{_type_label(entity_type, colors)}</th>"
                + "".join(_cell(values.get(key), "data-metric", key)
                          for key in columns) + "</tr>")
  overall = {key: metrics.get(key) for key in METRIC_KEYS}
  supports = [scores.get("support") for scores in per_type.values()]
  overall["support"] = (None if None in supports or not supports
                        else sum(supports))
  if analysis:
    overall["predicted"] = sum(analysis.predicted_counts.values())
  rows.append('<tr class="overall" data-row="overall"><th>overall</th>'
              + "".join(_cell(overall[key], "data-metric", key)
                        for key in columns) + "</tr>")
  head = "".join(f"<th>{key}</th>" for key in columns)
  return (f'<div class="table-scroll"><table id="{eval_set.key}-metrics">'
          f"<thead><tr><th>type</th>{head}</tr></thead><tbody>"
          + "".join(rows) + "</tbody></table></div>")


def _outcome_cell(eval_set: EvalSet, outcome: str, entity_type: str,
                  count: int) -> str:
  if count and outcome != analysis_lib.CORRECT:
    content = (f'<button class="cell-link" data-set="{eval_set.key}" '
               f'data-kind="{outcome}" data-type="{escape(entity_type)}" '
               f'title="show these sentences">{count}</button>')
  else:
    content = str(count)
  zero = ' class="zero"' if not count else ""
  return f'<td data-outcome="{outcome}"{zero}>{content}</td>'


def _outcomes_table(eval_set: EvalSet, colors: dict[str, int]) -> str:
  analysis = eval_set.analysis
  head = "".join(f"<th>{analysis_lib.OUTCOME_TITLES[o]}</th>"
                 for o in analysis_lib.OUTCOMES)
  rows = [f'<tr data-type="{escape(t)}"><th>{_type_label(t, colors)}</th>'
          + "".join(_outcome_cell(eval_set, o, t, counts[o])
                    for o in analysis_lib.OUTCOMES) + "</tr>"
          for t, counts in analysis.outcome_counts.items()]
  rows.append('<tr class="total" data-row="total"><th>all types</th>'
              + "".join(_outcome_cell(eval_set, o, "all", analysis.total(o))
                        for o in analysis_lib.OUTCOMES) + "</tr>")
  return (f'<div class="table-scroll"><table id="{eval_set.key}-outcomes">'
          f"<thead><tr><th>type</th>{head}</tr></thead><tbody>"
          + "".join(rows) + "</tbody></table></div>")


def _confusion_table(eval_set: EvalSet, colors: dict[str, int]) -> str:
  confusion = eval_set.analysis.confusion
  columns = list(confusion)
  head = "".join(f"<th>{_type_label(c, colors)}</th>" for c in columns)
  rows = []
  for row, counts in confusion.items():
    cells = []
    for column in columns:
      count = counts[column]
      kind = "diag" if row == column else ("off" if count else "zero")
      if row == column == analysis_lib.NO_ENTITY:
        kind, count = "zero", ""  # no gold and no prediction: not counted
      cells.append(f'<td data-pred="{escape(column)}" class="{kind}">'
                   f"{count}</td>")
    rows.append(f'<tr data-gold="{escape(row)}"><th>'
                f"{_type_label(row, colors)}</th>{''.join(cells)}</tr>")
  return (f'<div class="table-scroll"><table id="{eval_set.key}-confusion">'
          f'<thead><tr><th>gold \u2193 / predicted \u2192</th>{head}</tr>'
          f"</thead><tbody>{''.join(rows)}</tbody></table></div>")


def _token_gaps(tokens: Sequence[str]) -> list[str]:
  """The text before each token: "" or a space, as the sentence is written."""
  _, spans = predictions_lib.join_tokens(list(tokens))
  return [""] + [" " * (spans[i][0] - spans[i - 1][1])
                 for i in range(1, len(spans))]


def _span_text(tokens: Sequence[str], gaps: Sequence[str],
               span: analysis_lib.Span) -> str:
  return "".join((gaps[i] if i > span.start else "") + tokens[i]
                 for i in range(span.start, span.end))


def _tagged_text(tokens: Sequence[str], gaps: Sequence[str],
                 marked: Sequence[tuple[analysis_lib.Span, bool, str]],
                 colors: dict[str, int]) -> str:
  """Tokens with entity marks; `marked` is [(Span, is_error, title)].

  Example: tokens ["Rome", "<3"], gaps ["", " "], marked
  [(Span("LOC", 0, 1), False, "gold LOC: correct")] ->
  '<mark class="ent c0" data-type="LOC" title="gold LOC: correct">Rome'
  '<span class="ent-type">LOC</span></mark> &lt;3'
  """
  starts = {span.start: (span, is_error, title)
            for span, is_error, title in marked}
  parts, index = [], 0
  while index < len(tokens):
    if index not in starts:
      parts.append(escape(gaps[index] + tokens[index]))
      index += 1
      continue
    span, is_error, title = starts[index]
    color = colors.get(span.entity_type, 0)
    parts.append(
        f'{escape(gaps[index])}<mark class="ent c{color}'
        f'{" err" if is_error else ""}" data-type="{escape(span.entity_type)}" '
        f'title="{escape(title)}">{escape(_span_text(tokens, gaps, span))}'
        f'<span class="ent-type">{escape(span.entity_type)}</span></mark>')
    index = span.end
  return "".join(parts)


def _describe(outcome: analysis_lib.Outcome, tokens: Sequence[str],
              gaps: Sequence[str]) -> str:
  """One error as a list item, e.g. 'PER “John Smith” predicted as PER “John”'."""
  def quoted(span: analysis_lib.Span) -> str:
    text = escape(_span_text(tokens, gaps, span))
    return f"{escape(span.entity_type)} \u201c{text}\u201d"
  gold, pred = outcome.gold, outcome.pred
  if outcome.kind == analysis_lib.WRONG_TYPE:
    text = f"{quoted(gold)} predicted as {escape(pred.entity_type)}"
  elif outcome.kind in (analysis_lib.WRONG_BOUNDARY,
                        analysis_lib.WRONG_TYPE_AND_BOUNDARY):
    text = f"{quoted(gold)} predicted as {quoted(pred)}"
  elif outcome.kind == analysis_lib.MISSED:
    text = f"{quoted(gold)} not found"
  else:
    text = f"{quoted(pred)} predicted where gold has no entity"
  return (f'<li data-kind="{outcome.kind}" '
          f'data-type="{escape(outcome.entity_type)}"><span class="kind">'
          f"{analysis_lib.OUTCOME_TITLES[outcome.kind]}</span>{text}</li>")


def _sentence_item(item: analysis_lib.SentenceErrors, source: str,
                   colors: dict[str, int]) -> str:
  sentence, errors = item.sentence, item.errors
  tokens, gaps = sentence.tokens, _token_gaps(sentence.tokens)
  gold_marks = [(o.gold, o.kind != analysis_lib.CORRECT,
                 f"gold {o.gold.entity_type}: "
                 f"{analysis_lib.OUTCOME_TITLES[o.kind]}")
                for o in item.outcomes if o.gold]
  correct = {o.pred for o in item.outcomes if o.kind == analysis_lib.CORRECT}
  pred_marks = [(span, span not in correct,
                 f"predicted {span.entity_type}: "
                 f"{'correct' if span in correct else 'error'}")
                for span in analysis_lib.spans_of(sentence.pred_tags)]
  tags = " ".join(sorted({f"{o.kind}:{o.entity_type}" for o in errors}))
  plural = "s" if len(errors) != 1 else ""
  return (
      f'<li class="sentence" data-errors="{escape(tags)}" '
      f'data-index="{sentence.index}" data-error-count="{len(errors)}">'
      f'<div class="sentence-head">sentence {sentence.index + 1} '
      f"({escape(source)}:{sentence.line}) \u00b7 {len(errors)} "
      f"error{plural}</div>"
      f'<div class="tagged"><span class="who">gold</span><span class="text '
      f'gold">{_tagged_text(tokens, gaps, gold_marks, colors)}</span>'
      f'<span class="who">pred</span><span class="text pred">'
      f"{_tagged_text(tokens, gaps, pred_marks, colors)}</span></div>"
      f'<ul class="errors">'
      f'{"".join(_describe(o, tokens, gaps) for o in errors)}</ul></li>')


def _sentence_browser(eval_set: EvalSet, colors: dict[str, int]) -> str:
  analysis, key = eval_set.analysis, eval_set.key
  shown = analysis.sentences[:MAX_SENTENCES_SHOWN]
  kinds = "".join(f'<option value="{k}">{analysis_lib.OUTCOME_TITLES[k]}'
                  f"</option>" for k in analysis_lib.ERROR_KINDS)
  types = "".join(f'<option value="{escape(t)}">{escape(t)}</option>'
                  for t in analysis.entity_types)
  cut = (f'<p class="note">Showing the {len(shown)} worst of '
         f"{len(analysis.sentences)} sentences with errors.</p>"
         if len(shown) < len(analysis.sentences) else "")
  return (
      f'<div class="sentence-browser" id="{key}-sentences">'
      f'<div class="filters"><label>error kind <select id="{key}-filter-kind" '
      f'data-role="filter-kind"><option value="all">all errors</option>{kinds}'
      f'</select></label><label>entity type <select id="{key}-filter-type" '
      f'data-role="filter-type"><option value="all">all types</option>{types}'
      f'</select></label><span class="count"><span id="{key}-shown-count" '
      f'data-role="shown-count">{len(shown)}</span> of {len(shown)} '
      f"sentences shown</span></div>{cut}"
      f'<ol class="sentences">'
      + "".join(_sentence_item(item, eval_set.source, colors) for item in shown)
      + "</ol></div>")


def _kpis(eval_set: EvalSet) -> str:
  metrics = eval_set.metrics
  cards = [(name, metrics.get(name)) for name in ("f1", "precision",
                                                  "recall")]
  html_cards = "".join(
      f'<div class="kpi"><div class="label">entity {name}</div>'
      f'<div class="value" id="{eval_set.key}-overall-{name}">'
      f"{escape(_number(value))}</div></div>" for name, value in cards)
  if eval_set.analysis:
    total = eval_set.analysis.metrics["num_sentences"]
    with_errors = len(eval_set.analysis.sentences)
    html_cards += (
        '<div class="kpi"><div class="label">sentences with errors</div>'
        f'<div class="value" id="{eval_set.key}-sentences-with-errors">'
        f"{with_errors} / {total}</div></div>")
  return f'<div class="kpis">{html_cards}</div>'


def _set_section(eval_set: EvalSet, colors: dict[str, int]) -> str:
  warnings = "".join(f'<div class="warning">{escape(w)}</div>'
                     for w in eval_set.warnings)
  parts = [f'<section class="card eval-set" id="{eval_set.key}" '
           f'data-set="{eval_set.key}"><h2>{escape(eval_set.title)}</h2>'
           f'<p class="note">Figures from <code>{escape(eval_set.source)}'
           f"</code>.</p>{warnings}{_kpis(eval_set)}"
           f"<h3>Per-type scores</h3>{_metrics_table(eval_set, colors)}"]
  if eval_set.analysis is None:
    parts.append('<p class="note">No per-sentence predictions for this set, '
                 "so no error analysis.</p>")
  else:
    parts += [
        "<h3>Entity outcomes</h3><p class=\"note\">Each gold entity counts "
        "once: correct, wrong type (same span), wrong boundary (overlapping, "
        "same type), wrong type and boundary, or missed; predictions "
        "overlapping no gold entity are spurious. Click a count to list its "
        "sentences.</p>", _outcomes_table(eval_set, colors),
        "<h3>Confusion: gold type \u00d7 predicted type</h3><p class=\"note\">"
        "A gold entity's column is the type of the prediction it was matched "
        "with (any overlap); <em>none</em> means missed (column) or spurious "
        "(row).</p>", _confusion_table(eval_set, colors),
        "<h3>Sentences with errors</h3><p class=\"note\">Worst first. Dashed "
        "red outlines mark entities that are not exactly right.</p>",
        _sentence_browser(eval_set, colors)]
  parts.append("</section>")
  return "".join(parts)


def _settings_section(
    settings: Sequence[tuple[str, Sequence[tuple[str, Any]]]]) -> str:
  groups = []
  for title, items in settings:
    rows = "".join(
        f"<dt>{escape(name)}</dt><dd>{escape(_setting_value(value))}</dd>"
        for name, value in items)
    groups.append(f'<div><h3>{escape(title)}</h3><dl class="settings">{rows}'
                  "</dl></div>")
  body = (f'<div class="settings-groups">{"".join(groups)}</div>' if groups
          else '<p class="note">The run left no settings files.</p>')
  return ('<section class="card" id="settings"><h2>Run settings</h2>'
          f"{body}</section>")


def _setting_value(value: Any) -> str:
  if isinstance(value, (dict, list, tuple)):
    return json.dumps(value, ensure_ascii=False)
  return str(value)


def render_report(data: ReportData) -> str:
  """The whole page as a string (see the module docstring for its hooks)."""
  entity_types = sorted({t for s in data.eval_sets
                         for t in s.metrics.get("per_type", {})}
                        | {t for s in data.eval_sets if s.analysis
                           for t in s.analysis.entity_types})
  colors = {t: i % len(palette.TYPE_COLORS)
            for i, t in enumerate(entity_types)}
  toc = [(s.key, s.title) for s in data.eval_sets] + [
      ("curves", "Training curves"), ("settings", "Settings")]
  nav = "".join(f'<a href="#{escape(key)}">{escape(title)}</a>'
                for key, title in toc)
  notes = "".join(f"<li>{escape(n)}</li>" for n in data.notes)
  curves = (f'<div class="curves">{data.curves_svg}</div>' if data.curves_svg
            else '<p class="note">No training curves: the run left no event '
                 "files or CSV log.</p>")
  body = "".join(_set_section(s, colors) for s in data.eval_sets)
  if not data.eval_sets:
    body = ('<section class="card"><h2>No scores</h2><p class="note">'
            "Run with --do_eval or a labelled --do_predict.</p></section>")
  return (
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      '<meta name="viewport" content="width=device-width, initial-scale=1">'
      f"<title>NER evaluation report \u2014 {escape(data.output_dir)}</title>"
      f"<style>{report_assets.CSS}{palette.type_color_css()}</style>"
      '</head><body><header class="page"><h1>NER evaluation report</h1>'
      f'<div class="sub" id="output-dir">{escape(data.output_dir)}</div>'
      f'</header><nav class="toc">{nav}</nav><main>'
      + (f'<section class="card" id="notes"><ul class="note">{notes}</ul>'
         "</section>" if notes else "")
      + body
      + '<section class="card" id="curves"><h2>Training curves</h2>'
      f"{curves}</section>{_settings_section(data.settings)}</main>"
      "<footer>Written by <code>python -m trainer.report</code>; one "
      "self-contained file.</footer>"
      f"<script>{report_assets.JS}</script></body></html>\n")
