"""The two kinds of failure, and an interrupt.

``UserError``: bad input (a config key or value, a command-line argument, an env id, an unsupported space, a missing
or foreign file): the command line prints its message as one line and exits with code 2, before anything is written.
Any other exception is a bug: a traceback and exit code 1 (sweeps retry it).

``UserError`` subclasses ValueError, so code that catches ValueError around a constructor keeps working.
``Interrupted``: SIGINT/SIGTERM stopped a training run after writing a checkpoint (exit code 128 + the signal)."""

import signal


class UserError(ValueError):
    """Bad input; the message is one line saying what is wrong and what is accepted."""


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped a run; a checkpoint was written (when it has a logdir)."""

    def __init__(self, signum: int, step: int, logdir: str | None):
        self.signum, self.step, self.logdir = int(signum), step, logdir
        name = signal.Signals(self.signum).name
        where = (f"; checkpoint written, continue with: ssmworld train --logdir {logdir} --resume" if logdir else "")
        super().__init__(f"{name} at step {step}{where}")


def install_hint(extra: str) -> str:
    """How to install an optional extra (from the checkout, with the pins that keep torch a CPU build)."""
    return f"pip install -c constraints.txt -e '.[{extra}]' in the ssmworld checkout"
