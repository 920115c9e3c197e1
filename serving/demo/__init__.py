"""Demo layer: the page at `GET /` (`page`, pure) and its JSON endpoint
(`endpoint`), mounted into the development server's REST front by
`python -m serving.local_server`. Imports client and server."""
