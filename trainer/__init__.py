"""BERT named-entity-recognition trainer (pure-Python data code plus Estimator glue)."""
