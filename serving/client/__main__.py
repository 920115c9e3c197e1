"""`python -m serving.client`: texts in, entities out (`client.main`)."""

import sys

from serving.client import client

if __name__ == "__main__":
  sys.exit(client.main())
