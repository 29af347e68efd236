"""A new user's first hour (issue 13): help, the two kinds of failure, restarts, resume, config, exports, listings."""

import json
import os
import stat
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from ssmworld.cli import main
from ssmworld.runtime.config import load_config
from ssmworld.runtime.config_docs import config_rows
from ssmworld.sequence import CORES

DEBUG = ["--size", "debug", "--env", "builtin:recall/2", "--quiet", "train.prefill=20"]


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", [[], ["train"], ["eval"], ["plot"], ["sweep"], ["export"], ["list"], ["config"],
                                     ["bench", "cores"], ["bench", "world-model"]])
def test_help_of_every_command(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0 and "usage: ssmworld" in capsys.readouterr().out


def test_a_bug_is_a_traceback_not_bad_input(tmp_path, capsys, monkeypatch):
    from ssmworld.runtime.train import Trainer

    def broken(self):
        raise ValueError("shape mismatch inside an update")  # a bug, not the user's input

    monkeypatch.setattr(Trainer, "_update", broken)
    with pytest.raises(ValueError, match="shape mismatch"):  # propagates: Python prints it and exits 1
        main(["train", *DEBUG, "--steps", "60", "--logdir", str(tmp_path / "run")])
    script = ("import sys; from ssmworld.cli import main; from ssmworld.runtime.train import Trainer; "
              "Trainer._update = lambda self: 1 / 0; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", script, "train", *DEBUG, "--steps", "60", "--logdir",
                           str(tmp_path / "sub")], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr


def test_a_missing_extra_is_bad_input_but_a_broken_install_is_a_bug(tmp_path, monkeypatch):
    from ssmworld.errors import UserError, import_optional

    with pytest.raises(UserError, match=r"^x needs the minatar extra: pip install -c constraints.txt"):
        import_optional("not_installed_anywhere.environment", "minatar", "x needs the minatar extra")
    (tmp_path / "needs_a_dependency.py").write_text("import not_installed_anywhere\n")
    (tmp_path / "broken_inside.py").write_text("from json import no_such_name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match=r"^y \(no module 'not_installed_anywhere'\): pip install"):
        import_optional("needs_a_dependency", "bsuite", "y")  # a dependency of the package is what is missing
    with pytest.raises(ImportError, match="cannot import name 'no_such_name'") as caught:
        import_optional("broken_inside", "bsuite", "z")  # installed but broken: a bug, with its traceback
    assert not isinstance(caught.value, UserError)


def test_a_run_without_checkpoint_restarts_on_resume(tmp_path, capsys):
    logdir = tmp_path / "run"
    assert cli(capsys, "train", *DEBUG, "--steps", "60", "--logdir", str(logdir))[0] == 0
    for name in os.listdir(logdir / "checkpoints"):  # a finished run whose checkpoints were deleted: kept as it is
        os.rename(logdir / "checkpoints" / name, tmp_path / name)
    code, _, err = cli(capsys, "train", "--logdir", str(logdir), "--resume")
    assert code == 2 and "holds a finished run without checkpoints" in err and err.count("\n") == 1
    os.remove(logdir / "summary.json")  # as if stopped before its first checkpoint
    (logdir / "notes.txt").write_text("mine")  # what the user put there stays
    (logdir / "mydata").mkdir()
    code, out, err = cli(capsys, "train", "--logdir", str(logdir), "--resume")
    assert code == 0 and "starting the run again from step 0" in err
    assert (logdir / "notes.txt").read_text() == "mine" and (logdir / "mydata").is_dir()
    steps = [json.loads(line)["step"] for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and json.loads(out.splitlines()[-1])["steps"] == 60


def test_resume_is_consistent(tmp_path, capsys):
    logdir = str(tmp_path / "run")
    assert cli(capsys, "train", *DEBUG, "--steps", "60", "--logdir", logdir)[0] == 0
    first = json.loads(open(os.path.join(logdir, "summary.json")).read())
    for extra in (["--preset", "dreamerv3"], ["--env", "builtin:recall/3"], ["--size", "small"],
                  ["agent.imagination.horizon=2"]):
        code, _, err = cli(capsys, "train", "--logdir", logdir, "--resume", *extra)
        assert code == 2 and "keeps the run's config" in err and extra[0] in err
    rows = open(os.path.join(logdir, "metrics.jsonl")).read()
    code, out, err = cli(capsys, "train", "--logdir", logdir, "--resume")  # already finished: nothing appended
    assert code == 0 and open(os.path.join(logdir, "metrics.jsonl")).read() == rows
    assert cli(capsys, "train", "--logdir", logdir, "--resume", "--steps", "100")[0] == 0
    second = json.loads(open(os.path.join(logdir, "summary.json")).read())
    assert second["seconds"] > first["seconds"]  # all sessions, not the last one's


@pytest.mark.parametrize("args,message", [
    (["--preset", "r2j"], "did you mean 'r2i'"),
    (["--size", "smal"], "did you mean 'small'"),
    (["train.batch_size=0"], "train.batch_size must be positive, got 0"),
    (["train.train_ratio=-1"], "train.train_ratio must be >= 0"),
    (["train.train_ratio=inf"], "train.train_ratio must be >= 0, got inf"),
    (["train.train_ratio=nan"], "train.train_ratio must be >= 0, got nan"),
    (["--seed", "-1"], "train.seed must be >= 0, got -1"),
    (["--steps", "0"], "train.steps must be positive, got 0"),
    (["train.eval_every=-10"], "train.eval_every must be >= 0"),
    (["train.log_every=0"], "train.log_every must be positive"),
    (["train.keep_checkpoints=-1"], "train.keep_checkpoints must be >= 0"),
    (["train.minutes=-1"], "train.minutes must be >= 0"),
    (["train.stop_at=0.9", "train.eval_every=0"], "train.stop_at needs"),
    (["train.context=forever"], "train.context must be one of window, episode, got 'forever'"),
    (["agent.imagination.starts=replya"], "did you mean 'replay'"),
])
def test_bad_values_name_themselves(tmp_path, capsys, args, message):
    code, _, err = cli(capsys, "train", *DEBUG, "--logdir", str(tmp_path / "run"), *args)
    assert code == 2 and message in err and err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_logdir_that_is_a_file_is_bad_input(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = cli(capsys, "train", *DEBUG, "--logdir", str(tmp_path / "file"))
    assert code == 2 and "is a file" in err


def test_steps_below_prefill_warn_and_the_end_says_what_next(tmp_path, capsys):
    logdir = str(tmp_path / "run")
    code, out, err = cli(capsys, "train", "--size", "debug", "--env", "builtin:recall/2", "--steps", "10",
                         "--logdir", logdir)
    assert code == 0 and "no updates will run" in err and json.loads(out.splitlines()[-1])["updates"] == 0
    assert f"ssmworld eval --logdir {logdir}" in err and "--resume --steps" in err


@pytest.mark.parametrize("native", [False, True])
def test_bfloat16_without_bfloat16_units_warns_at_start_up(tmp_path, capsys, monkeypatch, native):
    monkeypatch.setattr("ssmworld.runtime.train.bfloat16_is_native", lambda device: native)
    code, _, err = cli(capsys, "train", "--size", "debug", "--env", "builtin:recall/2", "--steps", "10", "--logdir",
                       str(tmp_path / "run"), "agent.precision=bfloat16")
    assert code == 0 and ("no bfloat16 matmul units" in err) != native


def test_compiled_imagination_needs_a_compiler_to_train_not_to_evaluate(tmp_path, capsys, monkeypatch):
    logdir = tmp_path / "run"
    code, _, _ = cli(capsys, "train", "--size", "debug", "--env", "builtin:recall/2", "--steps", "10", "--logdir",
                     str(logdir), "train.eval_episodes=1")
    assert code == 0
    config = (logdir / "config.yaml").read_text()
    assert "compile_imagination: false" in config
    (logdir / "config.yaml").write_text(config.replace("compile_imagination: false", "compile_imagination: true"))
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    code, _, _ = cli(capsys, "eval", "--logdir", str(logdir), "--episodes", "1")
    assert code == 0
    code, _, err = cli(capsys, "train", "--size", "debug", "--env", "builtin:recall/2", "--logdir",
                       str(tmp_path / "compiled"), "agent.compile_imagination=true")
    assert code == 2 and "needs a C++ compiler" in err and not (tmp_path / "compiled").exists()


def test_config_prints_values_with_their_source(capsys):
    code, out, _ = cli(capsys, "config", "--preset", "dreamerv3", "--env", "bsuite:memory_len/3",
                       "agent.imagination.horizon=7", "train.env_options.max_steps=9")
    lines = {line.split(" = ")[0]: line for line in out.splitlines()}
    horizon = lines["agent.imagination.horizon"]
    assert code == 0 and "# command line" in horizon and "7" in horizon
    assert "'gru'" in lines["agent.world_model.core"] and "# preset dreamerv3" in lines["agent.world_model.core"]
    assert "# preset dreamerv3 size small" in lines["agent.world_model.gru.width"]
    assert "# default" in lines["agent.world_model.gru.norm_eps"]
    assert "# --env" in lines["train.env"]
    assert "# command line" in lines["train.env_options"]  # an entry of a dict-valued key


def test_list_keys_takes_the_run_options_and_describes_every_key(capsys):
    code, out, _ = cli(capsys, "list", "keys", "--preset", "dreamerv3", "--env", "dmc:walker_walk")
    assert code == 0 and "agent.world_model.core = 'gru'" in out
    assert "agent.world_model.latent_groups = 16  # categorical latents per step (G)" in out  # the dmc overlay
    for preset in ("r2i", "dreamerv3", "drama"):
        for core in CORES:
            cfg = load_config(preset, "small", "builtin:recall/2", [f"agent.world_model.core={core}"])
            undocumented = [key for key, _, _, text in config_rows(cfg) if not text]
            assert not undocumented, (preset, core, undocumented)


def test_piping_a_listing_into_head_is_quiet():
    proc = subprocess.run(f"{sys.executable} -m ssmworld list envs gym | head -1", shell=True, capture_output=True,
                          text=True)
    assert proc.stdout.count("\n") == 1 and proc.stderr == ""


def test_listing_a_suite_prints_one_id_per_line(capsys):
    code, out, _ = cli(capsys, "list", "envs", "builtin")
    assert code == 0 and out.splitlines()[:2] == ["builtin:recall/0", "builtin:recall/5"]


def test_unsupported_observation_space_says_how_to_fix_it():
    from ssmworld.envs.gym_adapter import DictObservation

    class TupleEnv(gym.Env):
        observation_space = gym.spaces.Tuple([gym.spaces.Discrete(2), gym.spaces.Discrete(3)])
        action_space = gym.spaces.Discrete(2)

    with pytest.raises(ValueError, match="FlattenObservation") as info:
        DictObservation(TupleEnv())
    assert "'vector'" not in str(info.value)


def test_exported_gym_policy_acts_on_the_envs_own_observations(tmp_path, capsys):
    import ssmworld
    from ssmworld import envs

    logdir, out = str(tmp_path / "run"), str(tmp_path / "exported")
    assert cli(capsys, "train", "--size", "debug", "--env", "gym:CartPole-v1", "--steps", "60", "--logdir", logdir,
               "--quiet", "train.prefill=20")[0] == 0
    assert cli(capsys, "export", "--logdir", logdir, "--out", out)[0] == 0
    assert stat.S_IMODE(os.stat(os.path.join(out, "model.safetensors")).st_mode) == 0o644
    policy = ssmworld.load_agent(out)
    plain, wrapped = gym.make("CartPole-v1"), envs.make("gym:CartPole-v1")
    obs, _ = plain.reset(seed=4)
    dict_obs, _ = wrapped.reset(seed=4)
    np.testing.assert_array_equal(obs, dict_obs["vector"])
    state = dict_state = None
    for step in range(20):  # the same actions from the raw and the dict observation, and the SB3 form
        torch.manual_seed(step)  # the posterior sample is random: the same draws for both
        action, state = policy.predict(obs, state)
        torch.manual_seed(step)
        dict_action, dict_state = policy.act(dict_obs, dict_state)
        assert action == dict_action and plain.action_space.contains(action)
        obs, _, terminated, truncated, _ = plain.step(action)
        dict_obs, *_ = wrapped.step(dict_action)
        if terminated or truncated:
            break
    without_converter = type(policy)(policy.agent, policy.action_space, policy.device)  # e.g. a bsuite export
    with pytest.raises(ValueError, match="expected a dict observation"):
        without_converter.act(obs)


def test_exported_policy_converts_a_gym_dict_observation_with_the_models_keys():
    """A gym: env's Dict observation has the model's keys but not its shapes (Discrete -> one-hot, Box -> flat): the
    policy converts it, and takes ssmworld's own dict as it is."""
    from ssmworld.dreamer.agent import Agent
    from ssmworld.runtime.config import load_config
    from ssmworld.tools.export import Policy

    space = gym.spaces.Dict({"d": gym.spaces.Discrete(3), "b": gym.spaces.Box(0.0, 1.0, (2, 2))})
    agent = Agent({"d": 3, "b": 4}, 2, True, load_config("r2i", "debug", "builtin:recall/2").agent)
    policy = Policy(agent, gym.spaces.Discrete(2), torch.device("cpu"), space)
    raw = {"d": 2, "b": np.arange(4, dtype=np.float32).reshape(2, 2) / 4}
    converted = policy._as_dict(raw)
    np.testing.assert_array_equal(converted["d"], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(converted["b"], [0.0, 0.25, 0.5, 0.75])
    np.testing.assert_array_equal(policy._as_dict(converted)["b"], converted["b"])  # already converted: as it is
    action, _ = policy.act(raw)
    assert action in (0, 1)


@pytest.mark.parametrize("args,message", [
    (["plot", "runs", "--out", "fig.xyz"], "--out fig.xyz: the format comes from the extension, one of"),
    (["plot", "runs", "--out", "afile/fig.png"], "afile is a file"),
    (["plot", "runs", "--out", "adir"], "--out adir is a directory"),
    (["plot", "runs", "--out", "fig.png", "--json", "afile/x.json"], "afile is a file"),
    (["eval", "--logdir", "run", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["eval", "--logdir", "run", "--video", "x.avi"], "--video x.avi: the format comes from the extension, one of "
                                                      ".gif, .mp4"),
    (["bsuite-score", "runs", "--json", "adir"], "--json adir is a directory"),
    pytest.param(["eval", "--logdir", "run", "--device", "cuda"], "CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")),
])
def test_output_paths_are_checked_before_any_work(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    code, _, err = cli(capsys, *args)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert sorted(os.listdir(tmp_path)) == ["adir", "afile"]  # nothing written


def test_a_damaged_run_directory_is_bad_input_not_a_traceback(tmp_path, capsys):
    """Damaged config.yaml, state.json or replay: `train --resume`, `eval` and `plot` say what is wrong in one line."""
    import shutil

    run = tmp_path / "run"
    assert cli(capsys, "train", *DEBUG, "--steps", "40", "--logdir", str(run))[0] == 0
    state_path = next((run / "checkpoints").iterdir()) / "state.json"

    def damaged(name, damage):
        copy = tmp_path / name
        shutil.copytree(run, copy)
        damage(copy)
        return str(copy)

    def drop_step(path):
        state_file = path / state_path.relative_to(run)
        state = json.loads(state_file.read_text())
        del state["replay_lengths"]
        state_file.write_text(json.dumps(state))

    cases = [
        (damaged("bad_yaml", lambda p: (p / "config.yaml").write_text("train: [\n")), "is not valid YAML", True),
        (damaged("list_yaml", lambda p: (p / "config.yaml").write_text("- 1\n- 2\n")), "holds no config", True),
        (damaged("empty_yaml", lambda p: (p / "config.yaml").write_text("")), "holds no config", True),
        (damaged("no_key", drop_step), "lacks replay_lengths: a damaged or foreign checkpoint", False),
        (damaged("no_replay", lambda p: shutil.rmtree(p / "replay")), "replay: ", False),
    ]
    for logdir, message, config in cases:
        code, _, err = cli(capsys, "train", "--logdir", logdir, "--resume", "--steps", "60")
        assert code == 2 and message in err and err.count("\n") == 1, (logdir, err)
        if config:  # eval and plot read the config too
            for args in (["eval", "--logdir", logdir], ["plot", logdir, "--out", str(tmp_path / "x.png")]):
                code, _, err = cli(capsys, *args)
                assert code == 2 and err.count("\n") == 1, (args, err)
