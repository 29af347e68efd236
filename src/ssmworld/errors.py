"""The two kinds of failure, and an interrupt.

``UserError``: bad input (a config key or value, a command-line argument, an env id, an unsupported space, a missing
or foreign file): the command line prints its message as one line and exits with code 2, before anything is written.
Any other exception is a bug: a traceback and exit code 1 (sweeps retry it).

``UserError`` subclasses ValueError, so code that catches ValueError around a constructor keeps working.
``Interrupted``: SIGINT/SIGTERM stopped a training run after writing a checkpoint (exit code 128 + the signal)."""

import dataclasses
import difflib
import importlib
import os
import signal
import types
import typing
from typing import Any, Literal


class UserError(ValueError):
    """Bad input; the message is one line saying what is wrong and what is accepted."""


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped a run; a checkpoint was written (when it has a logdir)."""

    def __init__(self, signum: int, step: int, logdir: str | None):
        self.signum, self.step, self.logdir = int(signum), step, logdir
        name = signal.Signals(self.signum).name
        where = (f"; checkpoint written, continue with: ssmworld train --logdir {logdir} --resume" if logdir else "")
        super().__init__(f"{name} at step {step}{where}")


def file_in_the_way(directory: str) -> str | None:
    """The existing file that keeps ``directory`` from being a directory or being created (itself or an ancestor)."""
    path = os.path.abspath(directory)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return None if os.path.isdir(path) else path


def check_output_path(path: str, flag: str, suffixes: typing.Iterable[str] = ()) -> None:
    """UserError, before any work, unless ``path`` can be written as a file: not a directory, no file where a
    directory on the way to it must be (missing ones are created), and its extension one of ``suffixes`` if given."""
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a directory; give a file name")
    blocked = file_in_the_way(os.path.dirname(os.path.abspath(path)))
    if blocked:
        raise UserError(f"{flag} {path}: {blocked} is a file")
    allowed = sorted(s.lower() for s in suffixes)
    if allowed and os.path.splitext(path)[1].lower().lstrip(".") not in allowed:
        raise UserError(f"{flag} {path}: the format comes from the extension, one of "
                        f"{', '.join('.' + s for s in allowed)}")


def install_hint(extra: str) -> str:
    """How to install an optional extra (from the checkout, with the pins that keep torch a CPU build)."""
    return f"pip install -c constraints.txt -e '.[{extra}]' in the ssmworld checkout"


def import_optional(module: str, extra: str, what: str) -> types.ModuleType:
    """``module``, imported. A module that is not installed (``module`` or one it imports) is bad input: a UserError
    "<what> (no module 'x'): pip install ..." naming the extra to install. Any other ImportError (a broken install,
    a circular import) is a bug and keeps its traceback, so it is never mistaken for a missing extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        missing = f" (no module {err.name!r})" if err.name and err.name.split(".")[0] != module.split(".")[0] else ""
        raise UserError(f"{what}{missing}: {install_hint(extra)}") from None


def choice_message(key: str, value: Any, choices: typing.Sequence[Any]) -> str:
    """'<key> must be one of a, b, got 'x'; did you mean 'a'?' for an enum value."""
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{key} must be one of {', '.join(names)}, got {value!r}{hint}"


def check_choices(config: Any, prefix: str) -> None:
    """Every ``Literal`` field of the dataclass ``config`` holds one of its values. Loaded configs are checked field by
    field (config.py); this covers configs built in code, in the one place each component is constructed."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        hint, value = hints[f.name], getattr(config, f.name)
        if typing.get_origin(hint) is Literal and value not in typing.get_args(hint):
            raise UserError(choice_message(f"{prefix}.{f.name}", value, typing.get_args(hint)))
