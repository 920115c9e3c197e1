"""Cloud training entry point: `python -m trainer.task <run_ner.py flags>`.

Vertex AI / AI Platform custom training runs a Python module of the submitted
package (`python setup.py sdist` packs `trainer`, `serving` and `run_ner`);
this runs exactly the same main as `run_ner.py`.
"""

import run_ner

if __name__ == "__main__":
  run_ner.run_main()
