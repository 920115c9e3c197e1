"""Checkpoint conversion: a Hugging Face BERT folder to Google's checkpoint
layout (`convert_checkpoint`; files in `hf_model_files`, name and shape
mapping in `hf_weights`). Imports the base modules only."""
