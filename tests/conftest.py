"""Fixtures every test module may use (defined in tests/tiny_bert.py)."""

from tests.tiny_bert import frozen  # noqa: F401  pylint: disable=unused-import
from tests.tiny_bert import workspace  # noqa: F401  pylint: disable=unused-import
