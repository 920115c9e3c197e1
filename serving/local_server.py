"""`python -m serving.local_server`: the development server with its demo page.

The server is `serving.server.local_server` (flags: `--help`); this command
mounts the demo (`serving.demo.endpoint`: `GET /` and `POST /demo/entities`)
into its REST front.
"""

import sys

from serving.demo import endpoint
from serving.server import local_server

if __name__ == "__main__":
  sys.exit(local_server.main(mount=endpoint))
