"""`python -m trainer.convert_checkpoint`: the converter's command (see
`__main__`); the converter is `trainer.convert.convert_checkpoint`."""
