"""Report layer: `report.html` for a run (`writer`; `python -m trainer.report
RUN_DIR`), its error analysis (`analysis`), HTML (`page`, `assets`) and SVG
training curves (`plots`, from event files read by `curves`). Imports base,
data and evaluation."""
