"""Training layer (Estimator glue): `model_fn_builder` (`model_fn`), session
config, strategies and Estimator construction (`estimator_lib`), progress and
timing hooks (`hooks`). Imports base, data, model, features and evaluation."""
