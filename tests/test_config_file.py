"""`--config FILE`: a YAML file of config keys between the preset's layers and the command line (train, config,
sweep), a run's own config.yaml included; bad files are one line and exit code 2."""

import json

import pytest

from ssmworld.cli import main
from ssmworld.runtime.config import load_config
from ssmworld.runtime.config_file import load_config_with_file, load_yaml, read_config_file, save_yaml
from ssmworld.runtime.sweep import SweepSettings, train_command
from ssmworld.runtime.sweep_grid import make_grid

EXPERIMENT = """\
preset: dreamerv3
size: debug
train:
  env: bsuite:memory_len/3
  batch_size: 8
  env_options: {}
agent.imagination.horizon: 7
agent.world_model.gru: {blocks: 2}
"""


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_nested_and_dotted_keys_flatten(tmp_path):
    flat = {"train.batch_size": 8, "train.env_options": {"sticky": 0.25}, "agent.world_model.gru.blocks": 2}
    nested = "train: {batch_size: 8, env_options: {sticky: 0.25}}\nagent.world_model.gru: {blocks: 2}\n"
    dotted = "train.batch_size: 8\ntrain.env_options: {sticky: 0.25}\nagent.world_model.gru.blocks: 2\n"
    assert read_config_file(write(tmp_path, nested, "nested.yaml")) == flat
    assert read_config_file(write(tmp_path, dotted, "dotted.yaml")) == flat
    assert read_config_file(write(tmp_path, "", "empty.yaml")) == {}


def test_the_file_sits_between_the_preset_and_the_command_line(tmp_path):
    path = write(tmp_path, EXPERIMENT)
    sources: dict[str, str] = {}
    cfg = load_config_with_file(path, overrides=["train.batch_size=4"], sources=sources)
    reference = load_config("dreamerv3", "debug", "bsuite:memory_len/3",
                            ["train.batch_size=4", "agent.imagination.horizon=7", "agent.world_model.gru.blocks=2"])
    assert cfg == reference  # the file chose the preset, size and env (and so the bsuite overlay)
    origin = f"--config {path}"
    assert sources["preset"] == sources["size"] == sources["train.env"] == origin
    assert sources["agent.imagination.horizon"] == sources["agent.world_model.gru.blocks"] == origin
    assert sources["train.batch_size"] == "command line"
    assert sources["agent.world_model.gru.width"] == "preset dreamerv3 size debug"
    # the flags win over the file's preset, size and env
    cfg = load_config_with_file(path, preset="r2i", size="small", env="builtin:recall/2")
    assert (cfg.preset, cfg.size, cfg.train.env) == ("r2i", "small", "builtin:recall/2")
    assert cfg.agent.world_model.core == "s5" and cfg.agent.imagination.horizon == 7 and cfg.train.batch_size == 8


def test_a_runs_config_yaml_rebuilds_that_run(tmp_path):
    cfg = load_config("r2i", "debug", "bsuite:memory_len/3", ["agent.world_model.s5.state_size=16",
                                                               "train.env_options.seed_offset=0"])
    save_yaml(cfg, str(tmp_path / "config.yaml"))
    again = load_config_with_file(str(tmp_path / "config.yaml"), overrides=["train.seed=5"])
    assert again != cfg and again.train.seed == 5
    again.train.seed = cfg.train.seed
    assert again == load_yaml(str(tmp_path / "config.yaml")) == cfg


def test_train_from_a_file_with_another_seed(tmp_path, capsys):
    path = write(tmp_path, EXPERIMENT.replace("bsuite:memory_len/3", "builtin:recall/2"))
    logdir = tmp_path / "run"
    code = main(["train", "--config", path, "--steps", "40", "--seed", "3", "--logdir", str(logdir), "--quiet",
                 "train.prefill=20"])
    assert code == 0 and json.loads(capsys.readouterr().out.splitlines()[-1])["steps"] == 40
    run = load_yaml(str(logdir / "config.yaml"))
    assert (run.preset, run.size, run.train.env, run.train.seed, run.train.steps) == ("dreamerv3", "debug",
                                                                                     "builtin:recall/2", 3, 40)
    assert run.agent.imagination.horizon == 7 and run.train.batch_size == 8 and run.train.prefill == 20
    code = main(["train", "--logdir", str(logdir), "--resume", "--config", path])
    assert code == 2 and "--resume keeps the run's config (--config given)" in capsys.readouterr().err


@pytest.mark.parametrize("text,message", [
    ("train: [\n", "is not valid YAML at line 2"),
    ("- 1\n- 2\n", "must be a mapping of config keys"),
    ("1: 2\n", "must be a mapping of config keys"),
    ("agent.imagination.horizn: 3\n", "unknown key 'agent.imagination.horizn'; did you mean"),
    ("agent.horizon: 3\n", "'agent.horizon' was renamed"),
    ("preset: 3\n", "preset expects a non-empty str, got 3"),
    ("preset: nope\n", "unknown preset 'nope'"),
    ("train.batch_size: big\n", "train.batch_size expects int, got 'big'"),
    ("preset: ''\n", "preset expects a non-empty str"),
    ("train.batch_size: 3\ntrain.batch_size: 4\n", "key 'train.batch_size' is given twice (line 2)"),
    ("train: &t {x: *t}\n", "nests without end"),
    ("agent: 3\n", "'agent' is a group"),
    ("agent: [1]\n", "'agent' is a group"),
    ("agent: {world_model: 3}\n", "'agent.world_model' is a group"),
    ("agent: {world_model: {core_cfg: 3}}\n", "'agent.world_model.core_cfg' was renamed"),
    ("train: 5\nagent: {imagination: posterior}\n", "'train' is a group"),
    ("agent: {imagination: 3}\n", "'agent.imagination' is now a group"),
    ("agent: {world_model: {core: [1], core_cfg: {a: 1}}}\n", "agent.world_model.core must be one of"),
    ("agent.world_model.core: gru\nagent.world_model.gru.blocks: 3\n", "must be a positive multiple of blocks"),
])
def test_bad_files_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, text, message):
    path, logdir = write(tmp_path, text), tmp_path / "run"
    code = main(["train", "--config", path, "--env", "builtin:recall/2", "--logdir", str(logdir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not logdir.exists()


def test_missing_files_and_directories(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("train.batch_size: 4\n")
    for given, message in ((tmp_path / "nofile.yaml", "no such file"),
                           (tmp_path / "run", f"a run's config is {tmp_path / 'run' / 'config.yaml'}")):
        assert main(["config", "--config", str(given)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert main(["config", "--config", str(tmp_path / "run" / "config.yaml"), "--logdir", str(tmp_path)]) == 2
    assert "takes no --preset, --size, --env, --config" in capsys.readouterr().err


def test_config_prints_the_files_keys_with_their_source(tmp_path, capsys):
    path = write(tmp_path, EXPERIMENT)
    assert main(["config", "--config", path, "train.batch_size=4"]) == 0
    lines = {line.split(" = ")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["agent.imagination.horizon"].endswith(f"# --config {path}")
    assert lines["train.batch_size"].endswith("# command line") and "= 4" in lines["train.batch_size"]
    assert lines["preset"].split("#")[0].strip() == "preset = 'dreamerv3'"
    assert lines["preset"].endswith(f"# --config {path}")
    # a command-line override of a key the file chose is labelled as the command line's
    assert main(["config", "--config", path, "preset=r2i", "train.env=bsuite:memory_len/4"]) == 0
    lines = {line.split(" = ")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["preset"].endswith("# command line") and lines["train.env"].endswith("# command line")


def test_a_key_inside_a_dict_field_is_an_override_not_a_traceback(capsys):
    assert main(["config", "--env", "bsuite:memory_len/3", "train.env_options.foo={a: 1}"]) == 0
    assert "train.env_options = {'foo': {'a': 1}}" in capsys.readouterr().out


def test_sweep_runs_read_the_file_and_take_its_preset(tmp_path, capsys):
    path = write(tmp_path, EXPERIMENT)
    settings = SweepSettings(str(tmp_path / "sweep"), config=path)
    run = make_grid(settings.root, ["dreamerv3"], ["debug"], "builtin:recall/2", [0])[0]
    command = train_command(run, settings, False)
    assert command[command.index("--config") + 1] == path and "--resume" not in command
    assert "--config" not in train_command(run, settings, True)  # a resumed run keeps its own config
    # bad keys in the file stop the sweep before anything is written (validated like overrides)
    bad = write(tmp_path, "preset: dreamerv3\ntrain.nosuch: 1\n", "bad.yaml")
    root = tmp_path / "bad_sweep"
    assert main(["sweep", "--root", str(root), "--config", bad, "--size", "debug", "--env", "builtin:recall/2"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.nosuch'" in err and err.count("\n") == 1 and not root.exists()
    # the file's preset is one preset, as for train (no comma list); a bad one is refused before anything starts
    two = write(tmp_path, "preset: r2i,dreamerv3\n", "two.yaml")
    assert main(["sweep", "--root", str(root), "--config", two, "--size", "debug", "--env", "builtin:recall/2"]) == 2
    assert "unknown preset 'r2i,dreamerv3'" in capsys.readouterr().err and not root.exists()
