"""Entity-type colours shared by report.html and the demo page (pure Python).

Types take colours in sorted type order, cycling: with types LOC, ORG, PER,
LOC gets class c0 (blue), ORG c1 (green), PER c2 (amber).
"""

# (background, border) per entity type, in sorted type order, cycling.
TYPE_COLORS = (
    ("#dbeafe", "#3b82f6"), ("#dcfce7", "#22c55e"), ("#fef3c7", "#f59e0b"),
    ("#fce7f3", "#ec4899"), ("#ede9fe", "#8b5cf6"), ("#cffafe", "#06b6d4"),
    ("#ffedd5", "#f97316"), ("#e0e7ff", "#6366f1"), ("#ecfccb", "#84cc16"),
    ("#f1f5f9", "#64748b"),
)


def type_color_css() -> str:
  """CSS classes c0, c1, ... colouring entity marks and type swatches."""
  return "\n".join(
      f".c{index} {{ --ent-bg: {background}; --ent-border: {border}; }}"
      for index, (background, border) in enumerate(TYPE_COLORS))
