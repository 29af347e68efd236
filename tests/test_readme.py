"""The README stays true: every fenced bash and python block runs, in order, in a fresh directory.

Shell commands run at debug sizes (`--size debug`, a few steps, 1-2 evaluation episodes); the set-up block's
install is CI's own command (tests/test_packaging.py), so only its `ssmworld` part runs. Python blocks run as written.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = ("python3 -m venv", "torchrun", "ssmworld sweep", "ssmworld bench")  # install; GPU/cluster; minutes-long


def blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced bash/python block, in order."""
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```(bash|python)\n(.*?)\n```", text, re.S)


def debug_command(line: str) -> str | None:
    """A README shell command at debug size, or None to skip it."""
    line = line.replace("\\\n", " ")
    if "&&" in line:  # the quickstart: install && run; the install is CI's
        line = line.rsplit("&&", 1)[1]
    line = line.split("#", 1)[0].strip()
    if not line or any(line.startswith(s) or s in line for s in SKIP) or "pytest" in line:
        return None
    words = shlex.split(line)
    if "ssmworld" not in words:
        return None
    words = words[words.index("ssmworld"):]
    if words[1] == "train":
        resume = "--resume" in words
        if "--steps" in words:
            words[words.index("--steps") + 1] = "120" if resume else "80"
        if not resume:
            if "--size" in words:
                words[words.index("--size") + 1] = "debug"
            else:
                words[2:2] = ["--size", "debug"]
            words += ["train.prefill=40", "train.eval_episodes=1", "train.batch_size=2"]
    if words[1] == "eval" and "--episodes" in words:
        words[words.index("--episodes") + 1] = "1"
    return shlex.join([sys.executable, "-m", *words])


@pytest.mark.slow
def test_every_readme_block_runs(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ran = 0
    for language, code in blocks():
        if language == "bash":
            for line in re.split(r"(?<!\\)\n", code):
                command = debug_command(line)
                if command is None:
                    continue
                proc = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
                assert proc.returncode == 0, (command, proc.stderr[-2000:])
                assert "Traceback" not in proc.stderr, (command, proc.stderr[-2000:])
                ran += 1
        else:
            proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
            assert proc.returncode == 0, (code, proc.stderr[-2000:])
            ran += 1
    assert ran >= 15  # every section's commands ran


def test_debug_command_rewrites_sizes_and_steps():
    got = debug_command("ssmworld train --preset r2i --size small --env x:y --steps 100000 --logdir runs/rp \\\n"
                        "    train.batch_size=32   # comment")
    assert "--size debug" in got and "--steps 80" in got and "train.batch_size=2" in got and "comment" not in got
    assert debug_command("python3 -m venv .venv && . .venv/bin/activate && pip install x && OMP_NUM_THREADS=1 "
                         "python -m pytest -q") is None
    assert debug_command("torchrun --standalone -m ssmworld train") is None
