"""`python -m trainer.task`: the cloud training command (see `__main__`)."""
