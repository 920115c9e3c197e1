"""The check that pure-Python modules import without TensorFlow."""

import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_imports_without_tensorflow(module: str) -> None:
  """Imports `module` in a fresh interpreter; TensorFlow must stay unloaded."""
  code = (f"import sys; import {module}; "
          "print('tensorflow' in sys.modules)")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=False,
                          timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "False", module
