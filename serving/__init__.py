"""Serving the exported model: client, development server and demo page.

Layers, each importing only the ones above it here (and `trainer`'s lower
layers; `trainer` never imports `serving`):

  serving/server/   `LocalModelServer`: TF Serving's gRPC and REST APIs for
                    development and tests, and the in-process SavedModel
                    session
  serving/client/   `NerClient`: texts to entities over gRPC, REST or in
                    process (`python -m serving.client`)
  serving/demo/     the demo page and its JSON endpoint
  serving/local_server.py  the command `python -m serving.local_server`: the
                    server with the demo mounted
"""
