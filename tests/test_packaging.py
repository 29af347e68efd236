"""The README's set-up commands and the CI script stay in step; the CLI reports bad input with exit code 2."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, re.S)


def test_readme_has_exactly_two_setup_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert "ssmworld" in commands[0] and "pytest" in commands[1]
    assert all("-c constraints.txt" in c for c in commands)


def test_ci_runs_the_readme_test_command_verbatim():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines


def test_constraints_pin_cpu_torch():
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssmworld", *args], capture_output=True, text=True)


def test_cli_bad_input_exits_2_with_one_line():
    proc = run_cli("bench", "cores", "--cores", "nosuch")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "available: s5" in proc.stderr
    for bad in (["bench", "cores", "--lengths", "abc"], ["bench", "nosuch"], ["bench", "cores", "--batch", "0"]):
        proc = run_cli(*bad)
        assert proc.returncode == 2, bad
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cli_lists_cores():
    proc = run_cli("list", "cores")
    names = [line.split(":")[0] for line in proc.stdout.splitlines() if not line.startswith(" ")]
    assert proc.returncode == 0 and names == ["attention", "gru", "mamba", "mamba2", "s5"]
    assert "  state_size = 64  # P, complex states per layer" in proc.stdout  # each core's options, described


def test_quickstart_train_command_is_valid():
    """The quickstart's `ssmworld train` arguments build a run (the run itself is the README's job)."""
    import shlex

    pytest = __import__("pytest")
    pytest.importorskip("bsuite")
    from ssmworld.cli_parser import build_parser
    from ssmworld.runtime.config import load_config
    from ssmworld.runtime.train import Trainer

    words = shlex.split(readme_commands()[0].split("&&")[-1])
    args = build_parser().parse_args(words[words.index("ssmworld") + 1:])
    assert args.command == "train" and args.steps > 0
    cfg = load_config(args.preset or "r2i", args.size or "small", args.env, args.overrides)
    Trainer(cfg, quiet=True).vec.close()
