"""Helpers for the report tests: a hand-made run folder and a tiny DOM."""

import html.parser
import json
import os
from typing import Optional

from trainer.evaluation import metrics

# Dev predictions (token gold predicted). Tokens hold HTML specials on purpose.
EVAL_PREDICTIONS = """\
John B-PER B-PER
<script>alert(1)</script> O O
Paris B-LOC B-ORG

AT&T B-ORG O
"Bob" O B-LOC
Mary B-PER B-PER
Smith I-PER O

Rome B-LOC B-LOC
. O O

"""


def conll_tags(text: str) -> tuple[list[list[str]], list[list[str]]]:
  """(gold, predicted) tag lists of a `token gold predicted` text."""
  gold, pred = [], []
  for block in text.strip().split("\n\n"):
    rows = [line.rsplit(None, 2) for line in block.splitlines()]
    gold.append([row[1] for row in rows])
    pred.append([row[2] for row in rows])
  return gold, pred


def eval_results_text(result: dict, global_step: int = 30) -> str:
  """eval_results.txt as the estimator writes it (entity_ keys, sorted)."""
  values = {"entity_precision": result["precision"],
            "entity_recall": result["recall"], "entity_f1": result["f1"],
            "global_step": global_step, "loss": 0.25}
  for entity_type, scores in result["per_type"].items():
    for key in ("precision", "recall", "f1"):
      values[f"entity_{entity_type}_{key}"] = scores[key]
  return "".join(f"{key} = {values[key]}\n" for key in sorted(values))


def write_run(output_dir: str, eval_predictions: Optional[str] = (
    EVAL_PREDICTIONS), predictions: Optional[str] = None,
              eval_results: Optional[str] = None, extra: dict = None) -> dict:
  """Writes a run folder; returns the dev metrics of `eval_predictions`."""
  os.makedirs(output_dir, exist_ok=True)
  result = metrics.entity_metrics(*conll_tags(eval_predictions or
                                              EVAL_PREDICTIONS))
  files = {"eval_results.txt": eval_results or eval_results_text(result),
           "labels.txt": "O\nB-LOC\nB-ORG\nB-PER\nI-LOC\nI-ORG\nI-PER\n",
           "bert_config.json": json.dumps({"hidden_size": 32,
                                           "num_hidden_layers": 1}),
           **(extra or {})}
  if eval_predictions is not None:
    files["eval_predictions.conll"] = eval_predictions
  if predictions is not None:
    files["predictions.conll"] = predictions
  for name, content in files.items():
    path = os.path.join(output_dir, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as writer:
      writer.write(content)
  return result


class Node:
  """An element: tag, attributes, children and text (tails included)."""

  def __init__(self, tag: str, attrs: dict):
    self.tag, self.attrs, self.children, self.parts = tag, attrs, [], []

  @property
  def text(self) -> str:
    return "".join(self.parts)

  def iter(self):
    yield self
    for child in self.children:
      yield from child.iter()

  def find_all(self, tag: Optional[str] = None, **attrs) -> list["Node"]:
    """Descendants with `tag` and attribute values (`data_type` is
    `data-type`)."""
    wanted = {key.replace("_", "-"): value for key, value in attrs.items()}
    return [node for node in self.iter()
            if (tag is None or node.tag == tag)
            and all(node.attrs.get(k) == v for k, v in wanted.items())]

  def find(self, tag: Optional[str] = None, **attrs) -> "Node":
    found = self.find_all(tag, **attrs)
    assert len(found) == 1, f"{len(found)} matches for {tag} {attrs}"
    return found[0]


VOID_TAGS = {"meta", "br", "img", "input", "link", "hr"}


class _TreeBuilder(html.parser.HTMLParser):

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.root = Node("#root", {})
    self.stack = [self.root]

  def handle_starttag(self, tag, attrs):
    node = Node(tag, {key: value or "" for key, value in attrs})
    self.stack[-1].children.append(node)
    if tag not in VOID_TAGS:
      self.stack.append(node)

  def handle_startendtag(self, tag, attrs):
    self.stack[-1].children.append(Node(tag, dict(attrs)))

  def handle_endtag(self, tag):
    while len(self.stack) > 1:
      if self.stack.pop().tag == tag:
        break

  def handle_data(self, data):
    for node in self.stack[1:]:
      node.parts.append(data)


def parse_html(page: str) -> Node:
  """A tiny DOM of `page` (element text includes its descendants' text)."""
  builder = _TreeBuilder()
  builder.feed(page)
  builder.close()
  return builder.root
