"""The runtime that runs the algorithm: configuration, the train loop and everything around it.

config.py, config_docs.py    the typed config tree, presets (ssmworld/presets/*.yaml), overrides, descriptions
config_file.py               configs in files: a run's config.yaml, `--config FILE`
train.py                     the Trainer: vector envs, the train ratio, evaluations, the time budget
schedule.py                  the loop's schedules (train ratio, every N steps, evaluations, wall clocks)
run_state.py, acting_state.py, checkpoint.py   exact resume: what a checkpoint holds, written atomically
episodes.py                  env <-> agent conversions, evaluation, loading a run
logger.py                    metrics.jsonl, TensorBoard, the progress line
distributed.py               data-parallel ranks under torchrun (gradient averaging injected into the agent)
sweep.py, sweep_grid.py      `ssmworld sweep` on Ray
process.py                   process settings (glibc malloc tuning)
"""
