"""trainer.training.roles: the chief is decided from TF_CONFIG itself."""

import json
import subprocess
import sys

import pytest

from trainer.errors import UserError
from trainer.training import roles

TWO_WORKERS = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
CHIEF_AND_WORKER = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}


@pytest.mark.parametrize("tf_config, expected", [
    (None, roles.TaskRole("", 0, 1, True)),
    ({}, roles.TaskRole("", 0, 1, True)),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
     roles.TaskRole("", 0, 1, True)),
    ({"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 0}},
     roles.TaskRole("worker", 0, 2, True)),
    ({"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 1}},
     roles.TaskRole("worker", 1, 2, False)),
    ({"cluster": CHIEF_AND_WORKER, "task": {"type": "chief", "index": 0}},
     roles.TaskRole("chief", 0, 2, True)),
    # With a chief entry, worker 0 is not the chief.
    ({"cluster": CHIEF_AND_WORKER, "task": {"type": "worker", "index": 0}},
     roles.TaskRole("worker", 0, 2, False)),
    ({"cluster": dict(CHIEF_AND_WORKER, evaluator=["c:3"]),
      "task": {"type": "evaluator", "index": 0}},
     roles.TaskRole("evaluator", 0, 2, False)),
])
def test_task_role(tf_config, expected):
  assert roles.task_role(tf_config or {}) == expected
  text = json.dumps(tf_config) if tf_config is not None else ""
  assert roles.task_role(text) == expected


def test_task_role_reads_the_environment(monkeypatch):
  monkeypatch.setenv("TF_CONFIG", json.dumps(
      {"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 1}}))
  role = roles.task_role()
  assert (role.is_chief, role.is_multi_worker, role.describe()) == (
      False, True, "worker 1 of 2")
  monkeypatch.delenv("TF_CONFIG")
  assert roles.task_role() == roles.SINGLE_PROCESS
  assert roles.SINGLE_PROCESS.describe() == "single process"


def test_describe_names_the_chief():
  role = roles.task_role(
      {"cluster": CHIEF_AND_WORKER, "task": {"type": "chief", "index": 0}})
  assert role.describe() == "chief of 2"


@pytest.mark.parametrize("tf_config, message", [
    ("{not json", "TF_CONFIG='{not json' is not valid JSON"),
    ("[1, 2]", "TF_CONFIG='[1, 2]' is not a JSON object"),
    (json.dumps({"cluster": TWO_WORKERS}),
     'TF_CONFIG names task {} but its cluster lists {"worker": 2} tasks'),
    (json.dumps({"cluster": TWO_WORKERS,
                 "task": {"type": "worker", "index": 2}}),
     'TF_CONFIG names task {"type": "worker", "index": 2} but its cluster '
     'lists {"worker": 2} tasks'),
    (json.dumps({"cluster": TWO_WORKERS,
                 "task": {"type": "chief", "index": 0}}),
     'TF_CONFIG names task {"type": "chief", "index": 0}'),
])
def test_bad_tf_config_is_a_user_error(tf_config, message):
  with pytest.raises(UserError) as raised:
    roles.task_role(tf_config)
  assert message in str(raised.value)


def test_roles_do_not_import_tensorflow():
  code = ("import sys; from trainer.training import roles; "
          "print('tensorflow' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True).stdout
  assert out.strip() == "False"
