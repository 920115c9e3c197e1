"""Tests for the NER trainer and server."""
