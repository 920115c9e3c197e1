"""`python -m trainer.task`: the same main as run_ner.py, inside the package."""

import ast
import glob
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_package_never_imports_the_runner():
  for path in glob.glob(os.path.join(REPO_ROOT, "trainer", "**", "*.py"),
                        recursive=True):
    with open(path, encoding="utf-8") as reader:
      tree = ast.parse(reader.read())
    imported = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        imported.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom):
        imported.add(node.module or "")
    assert "run_ner" not in imported, path


def test_task_runs_the_package_main_without_loading_run_ner():
  script = ("import runpy, sys\n"
            "sys.argv = ['trainer.task']\n"
            "try:\n"
            "  runpy.run_module('trainer.task', run_name='__main__')\n"
            "except SystemExit as exit_:\n"
            "  print('exit', exit_.code, 'run_ner' in sys.modules)\n")
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.stdout.strip().split("\n")[-1] == "exit 1 False"
  assert "Traceback" not in result.stderr
  assert [line for line in result.stderr.split("\n")
          if line.startswith("error:")] == [
              "error: At least one of --do_train, --do_eval, --do_predict or "
              "--do_export must be set."]
