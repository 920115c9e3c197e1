"""Fixtures every test module may use (defined in tests/tiny_bert.py).

Tests run with oneDNN as the trainer and the serving sessions choose it
(`cpu_features.prefer_onednn`: on for x86-64 unless TF_ENABLE_ONEDNN_OPTS is
set), decided here, before any test builds a graph, so that the order of the
tests cannot change it.
"""

from tests.tiny_bert import frozen  # noqa: F401  pylint: disable=unused-import
from tests.tiny_bert import frozen_checkpoint  # noqa: F401  pylint: disable=unused-import
from tests.tiny_bert import workspace  # noqa: F401  pylint: disable=unused-import
from trainer import cpu_features

cpu_features.prefer_onednn()
