"""Evaluation layer (pure Python): entity precision/recall/F1 with seqeval
(`metrics`) and the predictions files aligned to the input tokens
(`predictions`). Imports base, data and features."""
