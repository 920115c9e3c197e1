"""Durations for progress lines (pure Python; used by every layer that logs an
ETA: the training hooks and the encoder-feature cache build)."""


def format_seconds(seconds: float) -> str:
  """Duration as "<h>h<mm>m<ss>s"; infinity (no rate yet) as "unknown".

  Example: 3725.9 -> "1h02m05s", 59 -> "0h00m59s", inf -> "unknown".
  """
  if seconds == float("inf"):
    return "unknown"
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s"
