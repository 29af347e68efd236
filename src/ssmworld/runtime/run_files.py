"""What `ssmworld train` writes into a run directory, the only files ssmworld ever deletes there, and the lock of a
sweep root (no torch: the sweep driver imports it)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator

from ..errors import UserError

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


@contextlib.contextmanager
def root_lock(root: str) -> Iterator[None]:
    """Hold ``<root>/.sweep/lock`` while runs are driven: a second sweep on the same root would see the first one's
    live runs without a checkpoint as fresh and delete them. UserError if another process holds it (released when
    its holder exits, however it exits)."""
    import fcntl

    os.makedirs(os.path.join(root, ".sweep"), exist_ok=True)
    with open(os.path.join(root, ".sweep", "lock"), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise UserError(f"another sweep is running on {root} (pid {lock.read().strip() or '?'}); run one sweep "
                            "per root at a time") from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield
