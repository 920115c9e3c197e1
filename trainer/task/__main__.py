"""Cloud training entry point: `python -m trainer.task <run_ner.py flags>`.

Vertex AI / AI Platform custom training runs a Python module of the submitted
package (`python setup.py sdist` packs `trainer`, `serving` and `run_ner`);
this runs exactly the same main as `run_ner.py`: `trainer.run.cli.run_main`.
"""

from trainer.run import cli

if __name__ == "__main__":
  cli.run_main()
