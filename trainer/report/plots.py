"""Training-curve charts for the report, as inline SVG (matplotlib, no GUI).

Pure Python: never imports TensorFlow. The figure is drawn through
`matplotlib.figure.Figure` (no pyplot, no global backend change), so calling
it from a training process has no side effects on other plotting code.
"""

import io
from typing import Optional

from trainer.report import curves as report_curves

# (title, [(phase, tag, legend label, style)]), one panel each.
PANELS = (
    ("Loss", [(report_curves.TRAIN, "loss", "train (per step)", "line"),
              (report_curves.EVAL, "loss", "dev (per evaluation)", "marker")]),
    ("Learning rate", [(report_curves.TRAIN, "learning_rate",
                        "learning rate", "line")]),
    ("Dev entity F1", [(report_curves.EVAL, "entity_f1", "F1", "both"),
                       (report_curves.EVAL, "entity_precision", "precision",
                        "dashed"),
                       (report_curves.EVAL, "entity_recall", "recall",
                        "dotted")]),
)
COLORS = ("#2563eb", "#dc2626", "#059669", "#7c3aed")
_STYLES = {
    "line": {"linewidth": 1.6},
    "marker": {"linestyle": "none", "marker": "o", "markersize": 5},
    "both": {"linewidth": 1.8, "marker": "o", "markersize": 4},
    # Evaluations are few: every point gets a marker.
    "dashed": {"linewidth": 1.1, "linestyle": "--", "marker": "s",
               "markersize": 3},
    "dotted": {"linewidth": 1.1, "linestyle": ":", "marker": "^",
               "markersize": 3},
}


def _panels_with_data(curves: report_curves.Curves) -> list:
  panels = []
  for title, series in PANELS:
    present = [(label, style, sorted(curves[phase][tag].items()))
               for phase, tag, label, style in series
               if curves.get(phase, {}).get(tag)]
    if present:
      panels.append((title, present))
  return panels


def curves_svg(curves: report_curves.Curves) -> Optional[str]:
  """One SVG (a row of panels: loss, learning rate, dev F1) or None.

  Panels without data are left out; None when no panel has data. The XML
  prologue is stripped so the string can be inlined in HTML; text stays text
  (svg.fonttype none) and the output carries no date, so it is reproducible.
  """
  # Imported here: reading a report's data should not pay for matplotlib.
  import matplotlib  # pylint: disable=g-import-not-at-top
  from matplotlib import figure  # pylint: disable=g-import-not-at-top
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  panels = _panels_with_data(curves)
  if not panels:
    return None
  style = {"svg.fonttype": "none", "svg.hashsalt": "ner-report",
           "font.size": 9, "axes.spines.top": False,
           "axes.spines.right": False, "axes.grid": True,
           "grid.color": "#e5e7eb", "axes.edgecolor": "#9ca3af",
           "font.family": ["DejaVu Sans", "sans-serif"]}
  with matplotlib.rc_context(style):
    fig = figure.Figure(figsize=(3.6 * len(panels), 2.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, series) in zip(axes, panels):
      for color, (label, line_style, points) in zip(COLORS, series):
        steps, values = zip(*points)
        ax.plot(steps, values, color=color, label=label,
                **_STYLES[line_style])
      ax.set_title(title, fontsize=10, loc="left")
      ax.set_xlabel("step")
      ax.set_xlim(left=0)
      # Plain short numbers (5e-05, 0.25) instead of an offset label that
      # would collide with the title.
      ax.yaxis.set_major_formatter(ticker.FuncFormatter(
          lambda value, _: f"{value:.3g}"))
      if len(series) > 1:
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
  svg = buffer.getvalue()
  return svg[svg.index("<svg"):]
