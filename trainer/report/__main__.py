"""`python -m trainer.report RUN_DIR`: (re)writes a run's report.html."""

import sys

from trainer.report import writer

if __name__ == "__main__":
  sys.exit(writer.main())
