"""The documentation's links resolve, and the README stays a short front door.

For README.md, bench/README.md and every docs/*.md: each relative Markdown link
or image `[text](target)` names a file or folder that exists (relative to the
linking file), and each `#anchor`, in-page or `file.md#anchor`, matches a
heading of the target file by GitHub's slug rules (lower case; punctuation
other than hyphens, underscores and spaces dropped; each space a hyphen; a
repeated slug gets -1, -2, ...). External http(s) and mailto links are not
checked. Links and headings inside fenced code blocks and inline code are
ignored. Pure Python: nothing here imports TensorFlow.
"""

import glob
import os
import re
import urllib.parse
from typing import Dict, List, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 250
# The two commands of the README's "Install, run and test" section, verbatim.
README_COMMANDS = (
    "pip install -e . && python run_ner.py --do_train --do_eval --do_predict "
    "--do_export",
    'pip install -e ".[test]" && python -m pytest',
)

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
INLINE_CODE = re.compile(r"(`+)(?:.+?)\1")
# [text](target) or ![alt](target "title"); text may hold one level of [...].
LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"
    r"\(\s*<?([^\s<>()]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
INLINE_LINK_TEXT = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)")
EXTERNAL = ("http://", "https://", "mailto:")


def doc_files() -> List[str]:
  """Repository-relative paths of the checked Markdown files."""
  docs = sorted(os.path.relpath(path, ROOT) for path in
                glob.glob(os.path.join(ROOT, "docs", "*.md")))
  return ["README.md", os.path.join("bench", "README.md")] + docs


def prose_lines(text: str) -> List[Tuple[int, str]]:
  """(1-based line number, line) of every line outside fenced code blocks."""
  kept, fence = [], None
  for number, line in enumerate(text.split("\n"), start=1):
    match = FENCE.match(line)
    if fence is None:
      if match:
        fence = match.group(1)
      else:
        kept.append((number, line))
    elif (match and match.group(1)[0] == fence[0]
          and len(match.group(1)) >= len(fence)
          and not line.strip()[len(match.group(1)):].strip()):
      fence = None
  return kept


def slug(heading: str) -> str:
  """GitHub's anchor of a heading's text (before duplicate numbering).

  Example: "Multi-GPU, multi-worker and TPU" -> "multi-gpu-multi-worker-and-tpu".
  """
  text = INLINE_LINK_TEXT.sub(r"\1", heading).strip().lower()
  text = re.sub(r"[^\w\- ]", "", text)
  return text.replace(" ", "-")


def anchors(text: str) -> List[str]:
  """Every heading's anchor, in order, duplicates numbered -1, -2, ..."""
  seen: Dict[str, int] = {}
  result = []
  for _, line in prose_lines(text):
    match = HEADING.match(line)
    if not match:
      continue
    base = slug(match.group(1) or "")
    count = seen.get(base, 0)
    seen[base] = count + 1
    result.append(base if count == 0 else f"{base}-{count}")
  return result


def links(text: str) -> List[Tuple[int, str]]:
  """(line number, target) of every link and image outside code."""
  found = []
  for number, line in prose_lines(text):
    for match in LINK.finditer(INLINE_CODE.sub("", line)):
      found.append((number, match.group(1)))
  return found


def _read(relative: str) -> str:
  with open(os.path.join(ROOT, relative), encoding="utf-8") as reader:
    return reader.read()


def _resolve(source: str, target: str) -> Tuple[str, str]:
  """(repository-relative path, anchor) a link of `source` points at."""
  path, _, anchor = target.partition("#")
  path = urllib.parse.unquote(path)
  if not path:
    return source, anchor
  joined = os.path.normpath(os.path.join(os.path.dirname(source), path))
  return joined, anchor


def _relative_links(source: str) -> List[Tuple[int, str]]:
  return [(number, target) for number, target in links(_read(source))
          if not target.startswith(EXTERNAL)]


def test_slug_gives_githubs_anchors():
  assert slug("Multi-GPU, multi-worker and TPU") == (
      "multi-gpu-multi-worker-and-tpu")
  assert slug("Serving (development server, TF Serving, client)") == (
      "serving-development-server-tf-serving-client")
  assert slug("Accuracy (`bench/conll2003.py`)") == "accuracy-benchconll2003py"
  assert slug("Task layers: softmax, CRF, BiLSTM-CRF") == (
      "task-layers-softmax-crf-bilstm-crf")
  assert slug("The `predict_text` signature") == "the-predict_text-signature"


def test_anchors_number_duplicates_and_skip_code_blocks():
  text = ("# Title\n## Setup\n```bash\n# 1. not a heading\n```\n"
          "## Setup\n~~~\n## Setup\n~~~\n### Setup ###\n#hashtag\n")
  assert anchors(text) == ["title", "setup", "setup-1", "setup-2"]


def test_links_skip_code_and_keep_images_and_titles():
  text = ("See [a](a.md#x) and `[b](b.md)`.\n"
          "```\n[c](c.md)\n```\n"
          '![shot](docs/d.png "title") [e [f]](https://example.com)\n'
          "| `[[2,5],[2]]` | [g](#h) |\n")
  assert links(text) == [(1, "a.md#x"), (5, "docs/d.png"),
                         (5, "https://example.com"), (6, "#h")]


def test_readme_has_at_most_250_lines():
  lines = _read("README.md").split("\n")
  if lines[-1] == "":
    lines.pop()
  assert len(lines) <= README_MAX_LINES, (
      f"README.md has {len(lines)} lines; move detail into docs/")


def test_readme_keeps_the_two_commands_verbatim():
  code_lines = {line.strip() for line in _read("README.md").split("\n")}
  assert [c for c in README_COMMANDS if c not in code_lines] == []


def test_ci_comment_names_a_readme_heading():
  match = re.search(r'see README\.md "([^"]+)"', _read(os.path.join(".ci",
                                                                   "run")))
  assert match, ".ci/run no longer points at a README heading"
  assert slug(match.group(1)) in anchors(_read("README.md"))


@pytest.mark.parametrize("source", doc_files())
def test_relative_links_resolve(source):
  missing = []
  for number, target in _relative_links(source):
    path, _ = _resolve(source, target)
    full = os.path.join(ROOT, path)
    if path.startswith(".." + os.sep) or not os.path.exists(full):
      missing.append(f"{source}:{number}: {target}")
  assert missing == []


@pytest.mark.parametrize("source", doc_files())
def test_anchors_match_headings(source):
  unknown = []
  for number, target in _relative_links(source):
    path, anchor = _resolve(source, target)
    if "#" not in target or not os.path.isfile(os.path.join(ROOT, path)):
      continue  # no anchor, or a missing file (test_relative_links_resolve)
    if not path.endswith(".md"):
      unknown.append(f"{source}:{number}: {target} (anchor into a non-Markdown file)")
    elif anchor not in anchors(_read(path)):
      unknown.append(f"{source}:{number}: {target}")
  assert unknown == []


def test_every_screenshot_is_shown():
  shown = set()
  for source in doc_files():
    for _, target in _relative_links(source):
      shown.add(_resolve(source, target)[0])
  screenshots = {os.path.relpath(path, ROOT) for path in
                 glob.glob(os.path.join(ROOT, "docs", "*.png"))}
  assert screenshots, "docs/*.png: no screenshots found"
  assert sorted(screenshots - shown) == []


def test_readme_links_every_docs_page():
  linked = {_resolve("README.md", target)[0]
            for _, target in _relative_links("README.md")}
  pages = {os.path.relpath(path, ROOT) for path in
           glob.glob(os.path.join(ROOT, "docs", "*.md"))}
  assert sorted(pages - linked) == []
