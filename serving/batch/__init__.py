"""Batch tagging on Apache Beam: `python -m serving.batch` (see pipeline)."""
