"""What `ssmworld train` writes into a run directory, and the only files ssmworld ever deletes there (no torch: the
sweep driver imports it)."""

from __future__ import annotations

import os
import re
import shutil

# What `ssmworld train` writes into a run directory (data-parallel ranks > 0 keep their state in rank-<r>/): only
# these are ever deleted (a run restarted before its first checkpoint, a sweep's fresh start).
RUN_FILES = re.compile(r"config\.yaml(\.tmp)?|metrics\.jsonl|summary\.json(\.tmp)?|replay|checkpoints|tensorboard"
                       r"|debug|rank-\d+")


def clear_unstarted(logdir: str) -> None:
    """Remove what a run stopped before its first checkpoint wrote into ``logdir`` (RUN_FILES), keeping its
    config.yaml and every file it did not write."""
    for name in os.listdir(logdir):
        path = os.path.join(logdir, name)
        if name != "config.yaml" and RUN_FILES.fullmatch(name):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
