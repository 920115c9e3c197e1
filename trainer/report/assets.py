"""Inline CSS and JavaScript of report.html (no network at view time).

Pure Python: never imports TensorFlow. The entity colours are
`trainer.palette`'s, shared with the demo page.
"""

CSS = """
:root { --text: #111827; --muted: #6b7280; --line: #e5e7eb; --bg: #f8fafc;
  --card: #ffffff; --accent: #2563eb; --bad: #dc2626; --good: #059669; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto,
  "Noto Sans", "Noto Sans CJK SC", "Helvetica Neue", Arial, sans-serif; }
header.page { background: #0f172a; color: #f8fafc; padding: 20px 32px; }
header.page h1 { margin: 0; font-size: 20px; font-weight: 600; }
header.page .sub { color: #94a3b8; font-size: 13px; margin-top: 2px;
  word-break: break-all; }
nav.toc { background: #1e293b; padding: 0 32px; display: flex; gap: 20px;
  flex-wrap: wrap; }
nav.toc a { color: #cbd5e1; text-decoration: none; font-size: 13px;
  padding: 8px 0; display: inline-block; }
nav.toc a:hover { color: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; }
section.card { background: var(--card); border: 1px solid var(--line);
  border-radius: 10px; padding: 20px 24px; margin-bottom: 20px;
  box-shadow: 0 1px 2px rgba(15, 23, 42, .04); }
h2 { font-size: 17px; margin: 0 0 4px; }
h3 { font-size: 14px; margin: 22px 0 8px; color: #334155; }
p.note, .note { color: var(--muted); font-size: 12.5px; margin: 2px 0 10px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace;
  font-size: 12px; background: #f1f5f9; padding: 1px 4px; border-radius: 4px; }
.warning { background: #fef2f2; border: 1px solid #fecaca; color: #991b1b;
  border-radius: 8px; padding: 8px 12px; font-size: 13px; margin: 8px 0; }
.kpis { display: flex; gap: 14px; flex-wrap: wrap; }
.kpi { flex: 1 1 150px; border: 1px solid var(--line); border-radius: 8px;
  padding: 10px 14px; background: #fbfdff; }
.kpi .label { color: var(--muted); font-size: 12px; }
.kpi .value { font-size: 24px; font-weight: 600;
  font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; font-size: 13px;
  font-variant-numeric: tabular-nums; }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line);
  text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { color: var(--muted); font-weight: 600; font-size: 12px;
  border-bottom: 2px solid var(--line); }
tr.overall td, tr.overall th, tr.total td, tr.total th { font-weight: 600;
  border-top: 2px solid var(--line); }
td.zero { color: #cbd5e1; }
td.diag { background: #ecfdf5; }
td.off { background: #fef2f2; }
.table-scroll { overflow-x: auto; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 3px;
  margin-right: 6px; background: var(--ent-bg);
  border: 1px solid var(--ent-border); vertical-align: -1px; }
button.cell-link { font: inherit; color: var(--accent); background: none;
  border: 0; padding: 0; cursor: pointer; text-decoration: underline dotted; }
.curves svg { width: 100%; height: auto; }
.filters { display: flex; gap: 14px; align-items: center; flex-wrap: wrap;
  margin: 6px 0 12px; font-size: 13px; }
.filters select { font: inherit; padding: 4px 8px; border-radius: 6px;
  border: 1px solid #cbd5e1; background: #fff; }
.filters .count { color: var(--muted); }
ol.sentences { list-style: none; padding: 0; margin: 0; }
li.sentence { border: 1px solid var(--line); border-radius: 8px;
  padding: 10px 14px; margin-bottom: 10px; }
li.sentence[hidden] { display: none; }
.sentence-head { font-size: 12px; color: var(--muted); margin-bottom: 4px; }
.tagged { display: grid; grid-template-columns: 44px 1fr; gap: 4px 10px;
  align-items: baseline; }
.tagged .who { font-size: 11px; text-transform: uppercase;
  letter-spacing: .04em; color: var(--muted); }
.tagged .text { line-height: 2.1; font-size: 15px; white-space: pre-wrap;
  word-break: break-word; }
mark.ent { background: var(--ent-bg); border: 1px solid var(--ent-border);
  color: inherit; border-radius: 4px; padding: 1px 3px; margin: 0 1px; }
mark.ent.err { outline: 2px dashed var(--bad); outline-offset: 1px; }
mark.ent .ent-type { font-size: 10px; font-weight: 700; margin-left: 4px;
  color: #334155; vertical-align: 1px; letter-spacing: .02em; }
ul.errors { margin: 6px 0 0; padding: 0; list-style: none; font-size: 12.5px; }
ul.errors li { margin: 3px 0; display: grid;
  grid-template-columns: 168px 1fr; align-items: baseline; }
.kind { justify-self: start; font-size: 11px; font-weight: 600;
  color: #b91c1c; background: #fef2f2; border: 1px solid #fecaca;
  border-radius: 999px; padding: 0 8px; white-space: nowrap; }
.settings-groups { display: grid; gap: 0 36px;
  grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); }
dl.settings { display: grid; gap: 3px 18px;
  grid-template-columns: minmax(160px, max-content) 1fr; margin: 0;
  font-size: 13px; }
dl.settings dt { color: var(--muted); }
dl.settings dd { margin: 0; word-break: break-all;
  font-family: ui-monospace, SFMono-Regular, Menlo, monospace;
  font-size: 12px; }
footer { color: var(--muted); font-size: 12px; text-align: center;
  padding: 8px; }
"""

# Filters each sentence browser by error kind and entity type; a click on a
# count in an outcome table sets the filters of its set and scrolls there.
JS = """
(function () {
  function matches(li, kind, type) {
    return (li.dataset.errors || '').split(' ').some(function (item) {
      var cut = item.indexOf(':');
      var k = item.slice(0, cut), t = item.slice(cut + 1);
      return (kind === 'all' || k === kind) && (type === 'all' || t === type);
    });
  }
  function apply(browser) {
    var kind = browser.querySelector('[data-role=filter-kind]').value;
    var type = browser.querySelector('[data-role=filter-type]').value;
    var shown = 0;
    browser.querySelectorAll('li.sentence').forEach(function (li) {
      var ok = matches(li, kind, type);
      li.hidden = !ok;
      if (ok) { shown += 1; }
    });
    browser.querySelector('[data-role=shown-count]').textContent = shown;
  }
  document.querySelectorAll('.sentence-browser').forEach(function (browser) {
    browser.querySelectorAll('select').forEach(function (select) {
      select.addEventListener('change', function () { apply(browser); });
    });
    apply(browser);
  });
  document.querySelectorAll('button.cell-link').forEach(function (button) {
    button.addEventListener('click', function () {
      var browser = document.getElementById(button.dataset.set + '-sentences');
      var kind = browser.querySelector('[data-role=filter-kind]');
      var type = browser.querySelector('[data-role=filter-type]');
      kind.value = button.dataset.kind;
      type.value = button.dataset.type;
      apply(browser);
      browser.scrollIntoView({behavior: 'smooth'});
    });
  });
})();
"""
