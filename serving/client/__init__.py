"""Client layer: `NerClient` and its command (`client`; `python -m
serving.client`), texts to model inputs and outputs to entities
(`request_codec`, pure), and the gRPC, REST and in-process transports
(`transports`). Imports `trainer`'s lower layers and `serving.server`'s
in-process SavedModel session only."""
