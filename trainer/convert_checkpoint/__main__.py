"""`python -m trainer.convert_checkpoint --hf_model_dir DIR --output_dir OUT`:
the converter's command (the converter is `trainer.convert.convert_checkpoint`).
"""

from trainer.convert import convert_checkpoint

if __name__ == "__main__":
  convert_checkpoint.run_command()
