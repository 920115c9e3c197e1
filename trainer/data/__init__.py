"""Data layer (pure Python, never imports TensorFlow): files to `Sentence`s.

Readers, one per format in `formats/` and dispatched by `readers`; split-file
discovery (`data_files`), whole-file checks (`data_checks`), the warnings
collector (`data_warnings`), raw-text splitting (`word_splitting`), tag schemes
as data (`tag_schemes`), the label list (`labels`) and the embedded sample
dataset (`sample_data`). Imports only the base modules of `trainer`.
"""
