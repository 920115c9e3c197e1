"""The package layout: a folder per layer, imports only downward.

Every module of `trainer/` and `serving/` belongs to one layer of `LAYERS`
(longest prefix wins). A module may import its own layer and the layers
ranked below it, never one ranked higher or a different layer of the same rank
(sideways). Function-level imports count too. Pure text parsing: nothing is
imported, so the test runs in a second.
"""

import ast
import os
from typing import Iterator, List, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (module prefix, rank). Lower ranks are imported by higher ones, never the
# other way round; equal ranks do not import each other.
LAYERS = (
    # trainer's base: names, errors, file access, CPU facts, bert on TF 2.
    ("trainer.schema", 0), ("trainer.errors", 0), ("trainer.gfile_io", 0),
    ("trainer.cpu_features", 0), ("trainer.tf_compat", 0),
    ("trainer.durations", 0), ("trainer.palette", 0),
    ("trainer", 0),  # the package itself
    ("trainer.data", 1),
    ("trainer.model", 2),
    ("trainer.features", 3),
    ("trainer.evaluation", 4),
    ("trainer.distill", 4),  # distillation: teacher targets, student, loss
    ("trainer.training", 5), ("trainer.export", 5), ("trainer.report", 5),
    ("trainer.convert", 5),
    ("trainer.run", 6),
    # commands: `python -m trainer.task`, `python -m trainer.convert_checkpoint`
    ("trainer.task", 7), ("trainer.convert_checkpoint", 7),
    ("serving", 10),  # the package itself
    ("serving.server", 10),
    ("serving.client", 11),
    ("serving.demo", 12),
    ("serving.batch", 12),  # Beam batch tagging, on top of the client
    ("serving.local_server", 13),  # `python -m serving.local_server`
)
BASE_MODULES = {"__init__", "schema", "errors", "gfile_io", "cpu_features",
                "tf_compat", "durations", "palette"}
MAX_MODULES_PER_PACKAGE = 10
MAX_MODULE_LINES = 500


def layer_of(module: str) -> Tuple[str, int]:
  """(layer prefix, rank) of a dotted module name.

  Example: "trainer.data.formats.conll_reader" -> ("trainer.data", 1).
  """
  best = None
  for prefix, rank in LAYERS:
    if module == prefix or module.startswith(prefix + "."):
      if best is None or len(prefix) > len(best[0]):
        best = (prefix, rank)
  if best is None:
    raise KeyError(f"{module} belongs to no layer of tests/test_layers.py")
  return best


def project_modules() -> Iterator[Tuple[str, str]]:
  """(dotted name, file path) of every module of trainer/ and serving/."""
  for package in ("trainer", "serving"):
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
      for name in sorted(files):
        if name.endswith(".py"):
          path = os.path.join(folder, name)
          relative = os.path.relpath(path, ROOT)[:-3].split(os.sep)
          if relative[-1] == "__init__":
            relative = relative[:-1]
          yield ".".join(relative), path


def _is_module(dotted: str) -> bool:
  path = os.path.join(ROOT, *dotted.split("."))
  return os.path.isfile(path + ".py") or os.path.isdir(path)


def imported_modules(source: str) -> Iterator[Tuple[int, str]]:
  """(line, dotted name) of every trainer/serving module `source` imports.

  Example: "from trainer.data import readers" -> (1, "trainer.data.readers");
  "from trainer.schema import PAD_LABEL_ID" -> (1, "trainer.schema").
  """
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = [f"{node.module}.{alias.name}"
               if _is_module(f"{node.module}.{alias.name}") else node.module
               for alias in node.names]
    else:
      continue
    for name in names:
      if name.split(".")[0] in ("trainer", "serving"):
        yield node.lineno, name


def violations(module: str, source: str) -> List[str]:
  """Every import of `source` (the text of `module`) that points up or
  sideways, as "module:line imports target (layer a, rank r -> layer b,
  rank s)"."""
  own_layer, own_rank = layer_of(module)
  found = []
  for line, target in imported_modules(source):
    layer, rank = layer_of(target)
    if layer != own_layer and rank >= own_rank:
      found.append(f"{module}:{line} imports {target} ({own_layer}, rank "
                   f"{own_rank} -> {layer}, rank {rank})")
  return found


def test_every_module_has_a_layer():
  for module, _ in project_modules():
    layer_of(module)  # raises for a module outside every layer


def test_imports_point_down_only():
  found = []
  for module, path in project_modules():
    with open(path, encoding="utf-8") as reader:
      found += violations(module, reader.read())
  assert not found, "Upward or sideways imports:\n" + "\n".join(found)


@pytest.mark.parametrize("module, source, expected", [
    # up: data (1) must not import model (2)
    ("trainer.data.labels", "from trainer.model import heads\n",
     ["trainer.data.labels:1 imports trainer.model.heads (trainer.data, rank "
      "1 -> trainer.model, rank 2)"]),
    # sideways: training and export share rank 5; function-level counts too
    ("trainer.training.model_fn",
     "def f():\n  from trainer.export import exporter\n",
     ["trainer.training.model_fn:2 imports trainer.export.exporter "
      "(trainer.training, rank 5 -> trainer.export, rank 5)"]),
    # trainer never imports serving
    ("trainer.run.train_lib", "import serving.client.transports\n",
     ["trainer.run.train_lib:1 imports serving.client.transports "
      "(trainer.run, rank 6 -> serving.client, rank 11)"]),
    # the server does not import the client (nor the demo it serves)
    ("serving.server.model_manager",
     "from serving.client import transports\n",
     ["serving.server.model_manager:1 imports serving.client.transports "
      "(serving.server, rank 10 -> serving.client, rank 11)"]),
    # down and within a layer are fine; a name import resolves to its module
    ("trainer.run.config",
     "from trainer.data import readers\nfrom trainer.run import cli\n"
     "from trainer.schema import PAD_LABEL_ID\n", []),
])
def test_violations_names_each_upward_edge(module, source, expected):
  assert violations(module, source) == expected


def test_layer_of_picks_the_longest_prefix():
  assert layer_of("trainer.data.formats.conll_reader") == ("trainer.data", 1)
  assert layer_of("trainer.schema") == ("trainer.schema", 0)
  assert layer_of("serving.local_server") == ("serving.local_server", 13)
  with pytest.raises(KeyError, match="tools.x belongs to no layer"):
    layer_of("tools.x")


def test_trainer_top_level_holds_only_the_base_modules():
  names = {name[:-3] for name in os.listdir(os.path.join(ROOT, "trainer"))
           if name.endswith(".py")}
  assert names == BASE_MODULES


def test_packages_and_modules_stay_small():
  too_big = []
  modules_per_package = {}
  for module, path in project_modules():
    with open(path, encoding="utf-8") as reader:
      lines = len(reader.read().splitlines())
    if lines > MAX_MODULE_LINES:
      too_big.append(f"{path}: {lines} lines")
    if not path.endswith("__init__.py") and not path.endswith("__main__.py"):
      package = os.path.dirname(path)
      modules_per_package[package] = modules_per_package.get(package, 0) + 1
  crowded = {package: count for package, count in modules_per_package.items()
             if count > MAX_MODULES_PER_PACKAGE}
  assert not too_big and not crowded, (too_big, crowded)
