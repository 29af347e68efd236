"""`ssmworld train | eval | list`: runs, resume, JSON output, and one-line errors with exit code 2."""

import json
import os
import subprocess
import sys

import pytest

from ssmworld.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_resume_and_eval(tmp_path, capsys):
    logdir = str(tmp_path / "run")
    code, out, _ = run_cli(capsys, "train", "--size", "debug", "--env", "builtin:recall/2", "--steps", "60",
                           "--logdir", logdir, "--quiet", "train.prefill=20")
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["steps"] == 60 and summary["updates"] > 0 and "eval_return_mean" in summary
    assert {"config.yaml", "metrics.jsonl", "checkpoints", "replay"} <= set(os.listdir(logdir))
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        pass
    else:
        assert any(n.startswith("events.out.tfevents") for n in os.listdir(os.path.join(logdir, "tensorboard")))
    code, _, err = run_cli(capsys, "train", "--logdir", logdir, "--resume", "train.batch_size=4")
    assert code == 2 and "--resume keeps the run's config (train.batch_size=4 given)" in err
    # a new wall-clock budget, stopping score and checkpoint cadence for this session are allowed, and kept in the
    # run's config (stop_at=2.0 is unreachable: recall pays at most +1)
    code, out, _ = run_cli(capsys, "train", "--logdir", logdir, "--resume", "--steps", "100", "--quiet",
                           "train.minutes=30", "train.checkpoint_minutes=5", "train.stop_at=2.0")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["steps"] == 100
    saved = open(os.path.join(logdir, "config.yaml")).read()
    assert "minutes: 30.0" in saved and "checkpoint_minutes: 5.0" in saved and "stop_at: 2.0" in saved
    code, out, _ = run_cli(capsys, "eval", "--logdir", logdir, "--episodes", "4")
    result = json.loads(out)
    assert code == 0 and result["eval_episodes"] == 4 and result["steps"] == 100
    assert 0 <= result["eval_success_rate"] <= 1


@pytest.mark.parametrize("args,message", [
    (["--env", "nosuite:x"], "unknown env suite 'nosuite'"),
    (["--env", "builtin:recall/2", "agent.imagination.horizn=3"], "did you mean 'agent.imagination.horizon'"),
    (["--env", "builtin:recall/2", "agent.horizon=3"], "'agent.horizon' was renamed: use agent.imagination.horizon"),
    (["--env", "builtin:recall/2", "agent.imagination=context"], "use agent.imagination.starts=posterior|batch|replay"),
    (["--env", "builtin:recall/2", "train.batch_size=big"], "train.batch_size expects int, got 'big'"),
    (["--env", "builtin:recall/2", "--preset", "nope"], "unknown preset 'nope'"),
    (["--env", "builtin:recall/2", "agent.world_model.s5.bogus=1"], "unknown key 'agent.world_model.s5.bogus'"),
    (["--env", "builtin:recall/2", "agent.world_model.core_cfg.width=8"], "agent.world_model.s5.width"),
    (["--env", "builtin:recall/2", "agent.world_model.s5.discretization=zho"], "did you mean 'zoh'"),
    (["--env", "builtin:recall/2", "agent.world_model.core=gru", "agent.world_model.gru.blocks=3"],
     "must be a positive multiple of blocks"),
    (["--env", "builtin:recall/2", "agent.world_model.core=lstm"], "core must be one of s5, mamba, mamba2, gru"),
    (["--env", "gym:Pendulum-v1", "agent.policy_input=everything"], "policy_input must be one of"),
    (["--env", "builtin:recall/2", "--device", "cuda:7"] if not __import__("torch").cuda.is_available() else
     ["--env", "builtin:recall/2", "--device", "tpu"], "device"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    logdir = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--size", "debug", "--logdir", str(logdir), "--quiet", *args)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not logdir.exists()


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("keep")
    code, _, err = run_cli(capsys, "train", "--env", "builtin:recall/2", "--logdir", str(tmp_path / "x"))
    assert code == 2 and "not empty" in err
    code, _, err = run_cli(capsys, "train", "--logdir", str(tmp_path / "y"), "--resume")
    assert code == 2 and "not found" in err
    code, _, err = run_cli(capsys, "eval", "--logdir", str(tmp_path / "y"))
    assert code == 2 and "not found" in err


def test_list_commands(capsys):
    code, out, _ = run_cli(capsys, "list", "presets")
    assert code == 0 and "r2i" in out and "dreamerv3" in out
    code, out, _ = run_cli(capsys, "list", "envs")
    assert code == 0 and "builtin:" in out and "gym:" in out
    code, out, _ = run_cli(capsys, "list", "envs", "builtin")
    assert code == 0 and "recall/5" in out
    code, out, _ = run_cli(capsys, "list", "keys")
    assert code == 0 and "agent.world_model.core = 's5'" in out and "train.batch_size" in out


def test_argparse_errors_exit_2_in_a_subprocess(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ssmworld", "train", "--env", "builtin:recall/2"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--logdir" in proc.stderr and proc.stderr.count("\n") == 1


def test_export_and_load_agent_drive_an_env(tmp_path, capsys):
    import ssmworld
    from ssmworld import envs

    logdir, out = str(tmp_path / "run"), str(tmp_path / "exported")
    assert run_cli(capsys, "train", "--size", "debug", "--env", "builtin:recall/2", "--steps", "40", "--logdir",
                   logdir, "--quiet")[0] == 0
    code, stdout, _ = run_cli(capsys, "export", "--logdir", logdir, "--out", out)
    assert code == 0 and sorted(os.listdir(out)) == ["README.md", "config.yaml", "model.safetensors", "spaces.json"]
    assert "builtin:recall/2" in open(os.path.join(out, "README.md")).read()
    policy = ssmworld.load_agent(out)
    env = envs.make("builtin:recall/2", seed=0)
    obs, _ = env.reset(seed=0)
    state, done, steps = None, False, 0
    while not done:
        action, state = policy.act(obs, state)
        assert isinstance(action, int) and env.action_space.contains(action)
        obs, _, terminated, truncated, _ = env.step(action)
        done, steps = terminated or truncated, steps + 1
    assert steps == 4
    # the exported weights are the run's: same greedy actions as the checkpointed agent
    import torch

    from ssmworld.runtime.episodes import load_run

    _, agent, _ = load_run(logdir)
    for a, b in zip(agent.state_dict().values(), policy.agent.state_dict().values()):
        assert (a == b).all()
    obs, _ = env.reset(seed=1)
    batch = {k: torch.as_tensor(v)[None] for k, v in obs.items()}
    torch.manual_seed(3)
    live, _ = agent.act(batch, torch.tensor([True]), None, explore=True)
    torch.manual_seed(3)
    loaded, _ = policy.act(obs, None, explore=True)
    assert loaded == int(live[0].argmax())  # identical actions, also when sampling
    code, _, err = run_cli(capsys, "export", "--logdir", str(tmp_path / "none"), "--out", out)
    assert code == 2 and "not found" in err
    # an earlier export is replaced; nothing else is ever overwritten: the run itself, a directory holding it, a
    # directory with other files, a file (one line, exit 2, all left as they were)
    assert run_cli(capsys, "export", "--logdir", logdir, "--out", out)[0] == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    (tmp_path / "afile").write_text("keep")
    before = sorted(os.listdir(logdir))
    for target, message in [(logdir, "is or holds the run"), (str(tmp_path), "is or holds the run"),
                            (str(tmp_path / "mine"), "holds files an export does not write"),
                            (str(tmp_path / "afile"), "is a file"), (str(tmp_path / "afile" / "x"), "is a file")]:
        code, _, err = run_cli(capsys, "export", "--logdir", logdir, "--out", target)
        assert code == 2 and message in err and err.count("\n") == 1, (target, err)
    assert sorted(os.listdir(logdir)) == before and (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert (tmp_path / "afile").read_text() == "keep" and not (tmp_path / "afile.tmp").exists()


def test_the_model_cards_reproduce_command_carries_the_runs_overrides():
    """The exported model card's command rebuilds the run's config: its overrides over the preset, as the command
    line parses them (here a float, a choice, a dict option and a None-able value)."""
    from ssmworld.runtime.config import load_config
    from ssmworld.runtime.config_file import flatten, to_dict
    from ssmworld.tools.export import _overrides

    given = ["agent.imagination.horizon=2", "agent.world_model.unimix=0.02", "train.sampler=dfs",
             "train.env_options={max_steps: 1000}", "train.stop_at=0.9", "train.device=cpu"]
    cfg = load_config("r2i", "debug", "minatar:Breakout", given)
    overrides = _overrides(cfg)
    assert "train.device=cpu" not in overrides and "train.env_options={max_steps: 1000}" in overrides
    rebuilt = flatten(to_dict(load_config("r2i", "debug", "minatar:Breakout", overrides)))
    own = flatten(to_dict(cfg))
    assert {k: v for k, v in rebuilt.items() if k != "train.device"} == {k: v for k, v in own.items()
                                                                         if k != "train.device"}


def test_the_model_card_reports_no_evaluation_past_the_exported_checkpoint(tmp_path):
    """A killed session leaves evaluation rows past its last checkpoint (metrics.jsonl is cut only on resume)."""
    import json

    from ssmworld.runtime.config import load_config
    from ssmworld.tools.export import _model_card

    with open(tmp_path / "metrics.jsonl", "w") as f:
        for step, value in ((40, 0.25), (80, 0.75)):
            f.write(json.dumps({"step": step, "eval/return_mean": value}) + "\n")
    card = _model_card(str(tmp_path), load_config("r2i", "debug", "builtin:recall/2"), 40)
    assert "step 40" in card and "0.25" in card and "0.75" not in card
