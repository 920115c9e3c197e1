"""The demo page's HTML, CSS and JavaScript (inline; no network at view time).

`render` fills the template; `serving.demo.endpoint` escapes every value first.
The script builds all text into the page with `textContent` (never `innerHTML`)
and indexes texts by code point (`Array.from`), as Python's character
offsets count. Entity colours are the evaluation report's
(`trainer.palette.TYPE_COLORS`), by sorted type order.
"""

import html
import string

from trainer import palette

EXAMPLES = (
    "张三在北京的蓝海科技有限公司工作。",
    "John Smith works for Acme Corp in London.",
)

CSS = """
:root { --text: #0f172a; --muted: #64748b; --line: #e2e8f0; --bg: #f8fafc;
  --card: #ffffff; --accent: #2563eb; --accent-dark: #1d4ed8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto,
  "Noto Sans", "Noto Sans CJK SC", "WenQuanYi Micro Hei", "PingFang SC",
  "Microsoft YaHei", "Helvetica Neue", Arial, sans-serif; }
header.page { background: #0f172a; color: #f8fafc; padding: 18px 32px;
  display: flex; align-items: center; justify-content: space-between;
  gap: 16px; flex-wrap: wrap; }
header.page h1 { margin: 0; font-size: 19px; font-weight: 600; }
header.page .sub { color: #94a3b8; font-size: 13px; margin-top: 2px; }
.model-badge { font-size: 12.5px; color: #cbd5e1; border: 1px solid #334155;
  border-radius: 999px; padding: 4px 12px; white-space: nowrap; }
.model-badge b { color: #f8fafc; font-weight: 600; }
main { max-width: 980px; margin: 0 auto; padding: 24px 32px 40px; }
section.card { background: var(--card); border: 1px solid var(--line);
  border-radius: 10px; padding: 20px 24px; margin-bottom: 18px;
  box-shadow: 0 1px 2px rgba(15, 23, 42, .04); }
label.field { display: block; font-weight: 600; font-size: 13px;
  margin-bottom: 6px; }
textarea { width: 100%; min-height: 110px; resize: vertical; font: inherit;
  font-size: 16px; line-height: 1.6; padding: 10px 12px; color: var(--text);
  border: 1px solid #cbd5e1; border-radius: 8px; background: #fff; }
textarea:focus { outline: 2px solid #bfdbfe; border-color: var(--accent); }
.controls { display: flex; align-items: center; justify-content: space-between;
  gap: 12px; margin-top: 10px; flex-wrap: wrap; }
.examples { display: flex; align-items: center; gap: 6px; flex-wrap: wrap;
  font-size: 12.5px; color: var(--muted); }
button.example { font: inherit; font-size: 12.5px; color: #334155;
  background: #f1f5f9; border: 1px solid var(--line); border-radius: 999px;
  padding: 2px 10px; cursor: pointer; max-width: 340px; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
button.example:hover { background: #e2e8f0; }
.submit-group { display: flex; align-items: center; gap: 12px;
  margin-left: auto; }
#char-count { font-size: 12px; color: var(--muted);
  font-variant-numeric: tabular-nums; }
#char-count.over { color: #b91c1c; font-weight: 600; }
button.primary { font: inherit; font-weight: 600; color: #fff;
  background: var(--accent); border: 0; border-radius: 8px; padding: 8px 18px;
  cursor: pointer; }
button.primary:hover { background: var(--accent-dark); }
button.primary:disabled { background: #93c5fd; cursor: progress; }
kbd { font: 11px ui-monospace, SFMono-Regular, Menlo, monospace;
  color: var(--muted); border: 1px solid var(--line); border-bottom-width: 2px;
  border-radius: 4px; padding: 0 4px; background: #fff; }
.banner { border-radius: 8px; padding: 10px 14px; font-size: 13px;
  margin-bottom: 18px; }
.banner[hidden] { display: none; }
.banner.notice { background: #fffbeb; border: 1px solid #fde68a;
  color: #92400e; }
.banner.error { background: #fef2f2; border: 1px solid #fecaca;
  color: #991b1b; }
.banner .title { font-weight: 700; display: block; margin-bottom: 2px; }
.result-head { display: flex; align-items: baseline;
  justify-content: space-between; gap: 12px; flex-wrap: wrap; }
h2 { font-size: 16px; margin: 0; }
#result-meta { font-size: 12.5px; color: var(--muted); }
.legend { display: flex; gap: 8px; flex-wrap: wrap; margin: 12px 0 4px; }
.legend .item { display: inline-flex; align-items: center; gap: 6px;
  font-size: 12px; border: 1px solid var(--line); border-radius: 999px;
  padding: 2px 10px 2px 8px; background: #fff; }
.legend .item.absent { color: #94a3b8; }
.legend .item .n { color: var(--muted); font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 3px;
  background: var(--ent-bg); border: 1px solid var(--ent-border); }
#highlighted { font-size: 18px; line-height: 2.3; white-space: pre-wrap;
  word-break: break-word; padding: 14px 16px; margin: 12px 0 16px;
  border: 1px solid var(--line); border-radius: 8px; background: #fcfdff; }
mark.ent { background: var(--ent-bg); color: inherit; border-radius: 5px;
  border-bottom: 2px solid var(--ent-border); padding: 2px 4px; margin: 0 1px;
  transition: box-shadow .1s; }
mark.ent.active { box-shadow: 0 0 0 2px var(--ent-border); }
mark.ent .ent-type { font-size: 10.5px; font-weight: 700; margin-left: 5px;
  color: #334155; letter-spacing: .03em; vertical-align: 2px; }
.empty { color: var(--muted); font-size: 13px; margin: 4px 0; }
table { border-collapse: collapse; width: 100%; font-size: 13px;
  font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line);
  text-align: left; }
thead th { color: var(--muted); font-weight: 600; font-size: 12px;
  border-bottom: 2px solid var(--line); }
td.num, th.num { text-align: right; }
th.col-index { width: 44px; } th.col-type { width: 150px; }
th.col-span { width: 120px; } th.col-score { width: 170px; }
td.entity-text { font-size: 15px; }
tbody tr:hover { background: #f8fafc; }
.type-badge { display: inline-flex; align-items: center; gap: 6px;
  font-weight: 600; font-size: 12px; }
.score { display: inline-flex; align-items: center; gap: 8px; }
.bar { width: 80px; height: 6px; border-radius: 3px; background: #e2e8f0;
  overflow: hidden; display: inline-block; }
.bar span { display: block; height: 100%; background: #64748b; }
footer { color: var(--muted); font-size: 12px; text-align: center;
  max-width: 980px; margin: 0 auto; padding: 0 32px 28px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace;
  font-size: 11.5px; background: #f1f5f9; padding: 1px 4px; border-radius: 4px; }
"""

JS = """
(function () {
  'use strict';
  var config = JSON.parse(document.getElementById('demo-config').textContent);
  var main = document.querySelector('main');
  var form = document.getElementById('demo-form');
  var input = document.getElementById('text');
  var submitButton = document.getElementById('submit');
  var count = document.getElementById('char-count');
  var notice = document.getElementById('notice');
  var message = document.getElementById('message');
  var result = document.getElementById('result');
  var types = config.entity_types.slice();
  var REQUEST_TIMEOUT_MS = 120000;

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  // Python counts characters by code point; JavaScript strings by UTF-16.
  function codePoints(text) { return Array.from(text); }
  function colorClass(type) {
    var index = types.indexOf(type);
    if (index < 0) { types.push(type); index = types.length - 1; }
    return 'c' + (index % NUM_COLORS);
  }
  function swatch(type) { return element('span', 'swatch ' + colorClass(type)); }
  function updateCount() {
    var length = codePoints(input.value).length;
    count.textContent = length.toLocaleString('en-US') + ' / ' +
        config.max_chars.toLocaleString('en-US') + ' characters';
    count.classList.toggle('over', length > config.max_chars);
  }
  function showNotice(text) {
    notice.textContent = text || '';
    notice.hidden = !text;
  }
  function showError(title, text) {
    message.querySelector('.title').textContent = title;
    message.querySelector('.message-text').textContent = text;
    message.hidden = false;
    result.hidden = true;
    main.dataset.state = 'error';
  }
  function renderText(record, entities) {
    var target = document.getElementById('highlighted');
    var chars = codePoints(record.text);
    var cursor = 0;
    target.textContent = '';
    entities.forEach(function (entity, index) {
      if (entity.char_start < cursor) { return; }
      target.append(chars.slice(cursor, entity.char_start).join(''));
      var mark = element('mark', 'ent ' + colorClass(entity.type));
      mark.dataset.index = index;
      mark.dataset.type = entity.type;
      mark.dataset.start = entity.char_start;
      mark.dataset.end = entity.char_end;
      mark.dataset.score = entity.score;
      mark.title = entity.type + ' \\u00b7 score ' + entity.score.toFixed(3);
      mark.append(element('span', 'ent-text',
                          chars.slice(entity.char_start,
                                      entity.char_end).join('')),
                  element('span', 'ent-type', entity.type));
      target.append(mark);
      cursor = entity.char_end;
    });
    target.append(chars.slice(cursor).join(''));
  }
  function renderLegend(entities) {
    var legend = document.getElementById('legend');
    var shown = types.slice();
    entities.forEach(function (entity) {
      if (shown.indexOf(entity.type) < 0) { shown.push(entity.type); }
    });
    legend.textContent = '';
    shown.forEach(function (type) {
      var found = entities.filter(function (e) { return e.type === type; });
      var item = element('span', 'item' + (found.length ? '' : ' absent'));
      item.dataset.type = type;
      item.append(swatch(type), element('span', 'name', type),
                  element('span', 'n', String(found.length)));
      legend.append(item);
    });
  }
  function highlight(index, on) {
    var mark = document.querySelector('mark.ent[data-index="' + index + '"]');
    if (mark) { mark.classList.toggle('active', on); }
  }
  function renderTable(entities) {
    var body = document.querySelector('#entities tbody');
    body.textContent = '';
    document.getElementById('entities').hidden = !entities.length;
    document.getElementById('no-entities').hidden = entities.length > 0;
    entities.forEach(function (entity, index) {
      var row = element('tr');
      row.dataset.index = index;
      var type = element('td', 'entity-type');
      var badge = element('span', 'type-badge');
      badge.append(swatch(entity.type), element('span', '', entity.type));
      type.append(badge);
      var bar = element('span', 'bar');
      var fill = element('span');
      fill.style.width = (100 * entity.score).toFixed(1) + '%';
      bar.append(fill);
      var score = element('td', 'entity-score num');
      var scoreBox = element('span', 'score');
      scoreBox.append(bar, element('span', 'value', entity.score.toFixed(3)));
      score.append(scoreBox);
      row.append(element('td', 'num', String(index + 1)), type,
                 element('td', 'entity-text', entity.text),
                 element('td', 'entity-span num',
                         entity.char_start + '\\u2013' + entity.char_end),
                 score);
      row.addEventListener('mouseenter', function () { highlight(index, true); });
      row.addEventListener('mouseleave', function () { highlight(index, false); });
      body.append(row);
    });
  }
  function render(answer, elapsedMs) {
    var record = answer.records[0];
    var entities = record.entities;
    types = answer.entity_types.length ? answer.entity_types.slice() : types;
    showNotice(answer.notice);
    renderText(record, entities);
    renderLegend(entities);
    renderTable(entities);
    document.getElementById('result-meta').textContent =
        entities.length + (entities.length === 1 ? ' entity' : ' entities') +
        ' \\u00b7 ' + record.tokens.length + ' tokens \\u00b7 ' +
        answer.model + ' version ' + answer.version + ' (' +
        answer.signature + ') \\u00b7 ' + Math.round(elapsedMs) + ' ms';
    message.hidden = true;
    result.hidden = false;
    main.dataset.state = 'done';
  }
  async function submit() {
    main.dataset.state = 'busy';
    submitButton.disabled = true;
    submitButton.textContent = 'Tagging\\u2026';
    var started = performance.now();
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); },
                           REQUEST_TIMEOUT_MS);
    try {
      var reply = await fetch(config.endpoint, {
        method: 'POST', headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({text: input.value}), signal: controller.signal});
      var answer = null;
      try { answer = await reply.json(); } catch (error) { answer = null; }
      if (reply.ok && answer && answer.records) {
        render(answer, performance.now() - started);
      } else {
        showError('Could not tag the text (HTTP ' + reply.status + ')',
                  answer && answer.error ? answer.error :
                  'The server answered ' + reply.status + ' ' +
                  reply.statusText + ' without an explanation.');
      }
    } catch (error) {
      showError('Could not reach the server',
                error.name === 'AbortError' ?
                'No answer within ' + REQUEST_TIMEOUT_MS / 1000 + ' s.' :
                'Is python -m serving.local_server still running? (' +
                error.message + ')');
    } finally {
      clearTimeout(timer);
      submitButton.disabled = false;
      submitButton.textContent = 'Find entities';
    }
  }
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    submit();
  });
  input.addEventListener('input', updateCount);
  input.addEventListener('keydown', function (event) {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submit();
    }
  });
  document.querySelectorAll('button.example').forEach(function (button) {
    button.addEventListener('click', function () {
      input.value = button.dataset.text;
      updateCount();
      submit();
    });
  });
  showNotice(config.notice);
  updateCount();
  main.dataset.state = 'idle';
  var initial = new URLSearchParams(window.location.search).get('text');
  if (initial) {
    input.value = initial;
    updateCount();
    submit();
  }
})();
""".replace("NUM_COLORS", str(len(palette.TYPE_COLORS)))

TEMPLATE = string.Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>NER demo: $model</title>
<link rel="icon" href="data:,">
<style>$css</style>
</head>
<body>
<header class="page">
  <div>
    <h1>Named-entity recognition demo</h1>
    <div class="sub">Type a text; entities come from the served model through
      the client's own pipeline.</div>
  </div>
  <div class="model-badge">model <b id="model-name">$model</b> &middot;
    <span id="model-version">$version</span></div>
</header>
<main data-state="loading">
  <section class="card">
    <form id="demo-form" autocomplete="off">
      <label class="field" for="text">Text</label>
      <textarea id="text" name="text" spellcheck="false"
        placeholder="$placeholder"></textarea>
      <div class="controls">
        <div class="examples">Try: $examples</div>
        <div class="submit-group">
          <span id="char-count">0 / $max_chars characters</span>
          <kbd title="Ctrl+Enter also submits">Ctrl+Enter</kbd>
          <button type="submit" id="submit" class="primary">Find entities</button>
        </div>
      </div>
    </form>
  </section>
  <div id="notice" class="banner notice" role="status"$notice_hidden>$notice</div>
  <div id="message" class="banner error" role="alert" hidden>
    <span class="title"></span><span class="message-text"></span>
  </div>
  <section id="result" class="card" hidden>
    <div class="result-head"><h2>Entities</h2><span id="result-meta"></span></div>
    <div id="legend" class="legend"></div>
    <div id="highlighted" lang="und"></div>
    <p id="no-entities" class="empty" hidden>No entities found in this text.</p>
    <table id="entities">
      <thead><tr><th class="num col-index">#</th><th class="col-type">Type</th>
        <th>Text</th><th class="num col-span">Characters</th>
        <th class="num col-score">Score</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<footer>Development server (<code>python -m serving.local_server</code>).
  Character spans are [start, end) offsets into the text; the score is the
  mean probability of the entity's tags. JSON: <code>POST $endpoint</code>.
</footer>
<script type="application/json" id="demo-config">$config_json</script>
<script>$js</script>
</body>
</html>
""")


def render(*, model: str, version: str, notice: str, notice_hidden: str,
           max_chars: str, config_json: str, endpoint: str) -> str:
  """The page; every argument must already be HTML-escaped (or safe JSON)."""
  examples = " ".join(
      f'<button type="button" class="example" data-text="{html.escape(text)}"'
      f' title="{html.escape(text)}">{html.escape(text)}</button>'
      for text in EXAMPLES)
  return TEMPLATE.substitute(
      model=model, version=version, notice=notice,
      notice_hidden=notice_hidden, max_chars=max_chars,
      config_json=config_json, endpoint=endpoint, examples=examples,
      placeholder="e.g. 张三在北京的蓝海科技有限公司工作。",
      css=palette.type_color_css() + CSS, js=JS)
