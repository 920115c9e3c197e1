"""Run layer (top): flags (`cli`), `NerConfig` and its checks (`config`), the
run's inputs (`run_inputs`, `cached_input`) and the phases (`train_lib.run`).
May import every other layer; nothing imports it but the commands."""
