"""`python -m serving.batch`: tag files with an export on Apache Beam."""

import sys

from serving.batch import pipeline

if __name__ == "__main__":
  sys.exit(pipeline.main())
