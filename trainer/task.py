"""Cloud training entry point: `python -m trainer.task <run_ner.py flags>`.

Vertex AI / AI Platform custom training runs a Python module of the submitted
package (`python setup.py sdist` packs `trainer`, `serving` and `run_ner`);
this runs exactly the same main as `run_ner.py`: `trainer.cli.run_main`.
"""

from trainer import cli

if __name__ == "__main__":
  cli.run_main()
