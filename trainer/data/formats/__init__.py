"""One reader module per data format (conll, parallel, jsonl, text) and their
shared pieces (`reader_common`: `Sentence`, line reading). Pure Python."""
