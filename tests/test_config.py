"""Config tree, presets, suite overlays and type-checked overrides."""

import pytest

from ssmworld.runtime.config import (
    Config,
    ConfigError,
    apply_overrides,
    leaf_keys,
    load_config,
    preset_names,
)
from ssmworld.runtime.config_file import from_dict, load_yaml, save_yaml, to_dict


def test_presets_and_sizes_build():
    assert {"r2i", "dreamerv3", "drama"} <= set(preset_names())
    for preset in ("r2i", "dreamerv3", "drama", "drama-mamba1"):
        for size in ("debug", "small", "paper"):
            cfg = load_config(preset, size, "builtin:recall/5")
            assert cfg.preset == preset and cfg.size == size and cfg.train.env == "builtin:recall/5"


def test_r2i_and_dreamerv3_differ_in_core_and_policy_input():
    r2i, dv3 = load_config("r2i", "small", "gym:CartPole-v1"), load_config("dreamerv3", "small", "gym:CartPole-v1")
    assert (r2i.agent.world_model.core, r2i.agent.policy_input) == ("s5", "full")
    assert (dv3.agent.world_model.core, dv3.agent.policy_input) == ("gru", "output")


def test_suite_overlays_follow_the_spec():
    bsuite = load_config("r2i", "paper", "bsuite:memory_len/10")
    core = bsuite.agent.world_model.s5
    assert (core.width, core.state_size, core.n_layers) == (512, 128, 3)
    assert (core.discretization, core.initial) == ("zoh", "zeros")
    assert (bsuite.train.batch_size, bsuite.train.sequence_length, bsuite.train.train_ratio) == (16, 256, 1024)
    assert bsuite.agent.policy_input == "hidden"
    popgym = load_config("r2i", "paper", "popgym:RepeatPreviousEasy")
    assert popgym.agent.world_model.s5.output_dim == 1024 and popgym.train.envs == 8
    small_bsuite = load_config("r2i", "small", "bsuite:memory_len/10")
    assert small_bsuite.agent.world_model.s5.discretization == "zoh"  # "all" overlays apply to every size
    assert small_bsuite.agent.world_model.s5.width == 128
    default = load_config("r2i", "paper", "gym:CartPole-v1")
    assert default.agent.world_model.s5.output_dim == 4096 and default.agent.policy_input == "full"


def test_overrides_convert_and_check_types():
    cfg = load_config("r2i", "debug", "builtin:recall/5", ["train.batch_size=32", "agent.model_lr=1e-4",
                                                           "train.steps=1e5", "agent.imagination.count=none",
                                                           "agent.world_model.s5.state_size=16",
                                                           "train.device=cpu"])
    assert cfg.train.batch_size == 32 and cfg.agent.model_lr == 1e-4 and cfg.train.steps == 100_000
    assert cfg.agent.imagination.count is None and cfg.agent.world_model.s5.state_size == 16
    assert cfg.agent.world_model.s5.width == 16  # the other core options stay
    assert isinstance(cfg.agent.model_lr, float)


@pytest.mark.parametrize("override,message", [
    ("train.batch_size=abc", "train.batch_size expects int, got 'abc'"),
    ("train.batch_size=1.5", "expects int"),
    ("train.batch_size=true", "expects int"),
    ("agent.model_lr=fast", "agent.model_lr expects float"),
    ("agent.imagination.horizn=3", "unknown key 'agent.imagination.horizn'; did you mean 'agent.imagination.horizon'"),
    ("train.batchsize=3", "did you mean 'train.batch_size'"),
    ("agent.world_model=3", "is a group"),
    ("train.steps.x=3", "is a value, not a group"),
    ("nonsense", "must look like key=value"),
    ("train.device=42", None),  # an int where a str is expected is taken as its text
    # a group's own checks run on the final values, not only when the group is constructed
    ("agent.actor_critic.reset_every=-1", "agent.actor_critic.reset_every must be >= 0"),
    ("agent.actor_critic.reset_warmup=5", "reset_warmup must be >= 0 and needs reset_every > 0"),
    ("agent.imagination.horizon=0", "agent.imagination: horizon, context and count must be >= 1"),
    ("agent.act_epsilon=1.5", "agent.act_epsilon must be in .0, 1., got 1.5"),
    ("agent.actor_critic.unimix=1.0", "agent.actor_critic.unimix must be in .0, 1., got 1.0"),
    ("agent.world_model.unimix=-0.1", "agent.world_model.unimix must be in .0, 1., got -0.1"),
])
def test_bad_overrides_give_one_line_errors(override, message):
    if message is None:
        assert load_config("r2i", "debug", overrides=[override]).train.device == "42"
        return
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as err:
        load_config("r2i", "debug", "builtin:recall/5", [override])
    assert "\n" not in str(err.value)


def test_unknown_preset_and_size():
    with pytest.raises(ConfigError, match="unknown preset 'nope'; available: .*r2i"):
        load_config("nope")
    with pytest.raises(ConfigError, match="unknown size 'huge'"):
        load_config("r2i", "huge")


def test_env_must_be_set_with_its_flag():
    with pytest.raises(ConfigError, match="--env"):
        load_config("r2i", "debug", "builtin:recall/5", ["train.env=bsuite:memory_len/3"])


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config("dreamerv3", "debug", "builtin:recall/3", ["agent.imagination.horizon=7"])
    save_yaml(cfg, str(tmp_path / "config.yaml"))
    assert load_yaml(str(tmp_path / "config.yaml")) == cfg
    assert from_dict(to_dict(cfg)) == cfg


def test_every_leaf_key_accepts_its_own_default():
    from ssmworld.runtime.config import get_key

    cfg = Config()
    apply_overrides(cfg, {key: get_key(Config(), key) for key in leaf_keys()})
    assert cfg == Config()
    apply_overrides(cfg, {"train.seed": 3, "agent.actor_critic.entropy": 1e-3})
    assert cfg.train.seed == 3 and cfg.agent.actor_critic.entropy == 1e-3


def test_r2i_overlays_for_the_other_suites():
    mmaze = load_config("r2i", "paper", "memorymaze:9x9")
    core = mmaze.agent.world_model.s5
    assert (core.width, core.state_size, core.n_layers, core.output_dim) == (1024, 512, 5, 2048)
    assert (mmaze.agent.world_model.dyn_scale, mmaze.agent.world_model.rep_scale) == (0.8, 0.2)
    assert mmaze.agent.model_lr == 3e-4 and mmaze.train.envs == 40 and mmaze.agent.policy_input == "full"
    assert load_config("r2i", "small", "memorymaze:9x9").agent.actor_critic.entropy == 1e-3
    assert load_config("r2i", "paper", "dmc_vision:walker_walk").agent.world_model.cnn_depth == 32
    assert load_config("r2i", "paper", "dmc:walker_walk").agent.world_model.encoder_layers == 5
    assert load_config("r2i", "paper", "atari:Pong").train.env_options == {"noop_max": 30}
    for preset in ("r2i", "dreamerv3"):  # continuous control at the small size: a finer latent
        for env in ("dmc:cartpole_balance", "dmc_vision:walker_walk"):
            small = load_config(preset, "small", env).agent
            assert (small.world_model.latent_groups, small.world_model.latent_classes) == (16, 16), (preset, env)
            assert small.actor_critic.continuous_gradient == "dynamics", (preset, env)
        assert load_config(preset, "small", "popgym:RepeatPreviousEasy").agent.world_model.latent_groups == 4


def test_dreamerv3_overlays_match_r2i_except_the_core():
    for env in ("memorymaze:9x9", "dmc_vision:walker_walk", "dmc:walker_walk", "atari:Pong"):
        r2i, dv3 = load_config("r2i", "paper", env), load_config("dreamerv3", "paper", env)
        assert dv3.agent.world_model.core == "gru" and dv3.agent.policy_input == "output"
        assert dv3.agent.world_model.gru.width == r2i.agent.world_model.s5.output_dim, env
        for key in ("units", "cnn_depth", "head_layers", "dyn_scale", "rep_scale"):
            assert getattr(dv3.agent.world_model, key) == getattr(r2i.agent.world_model, key), (env, key)
        assert (dv3.agent.model_lr, dv3.agent.actor_lr, dv3.agent.actor_critic.entropy) == (
            r2i.agent.model_lr, r2i.agent.actor_lr, r2i.agent.actor_critic.entropy)
        assert (dv3.train.train_ratio, dv3.train.envs, dv3.train.env_options) == (
            r2i.train.train_ratio, r2i.train.envs, r2i.train.env_options)
        assert (dv3.train.batch_size, dv3.train.sequence_length) == (16, 64)  # DreamerV3's own batch


def test_extends_composes_at_any_depth(monkeypatch):
    from ssmworld.runtime import config as config_module

    presets = {
        "root": {"base": {"agent.imagination.horizon": 1},
                 "sizes": {"small": {"agent.imagination.horizon": 2, "train.batch_size": 3}},
                 "suites": {"builtin": {"all": {"agent.imagination.horizon": 5}}}},
        "middle": {"extends": "root", "base": {"agent.imagination.horizon": 10, "train.seed": 7},
                   "sizes": {"small": {"train.batch_size": 4}}},
        "leaf": {"extends": "middle", "base": {"train.seed": 8},
                 "suites": {"builtin": {"small": {"agent.imagination.horizon": 6}}}},
        "loop_a": {"extends": "loop_b"}, "loop_b": {"extends": "loop_a"},
    }
    monkeypatch.setattr(config_module, "read_preset", lambda name: presets[name])
    layers = [origin for origin, _ in config_module.preset_layers("leaf", "small", "builtin")]
    assert layers[:3] == ["preset root", "preset middle", "preset leaf"]  # base layers, the root first
    assert layers[3:6] == ["preset root size small", "preset middle size small", "preset leaf size small"]
    cfg = config_module.load_config("leaf", "small", "builtin:recall/2")
    # base: 1 -> 10; sizes: 2; suite all (root): 5; suite size (leaf): 6
    assert cfg.agent.imagination.horizon == 6 and cfg.train.batch_size == 4 and cfg.train.seed == 8
    with pytest.raises(ValueError, match="circular 'extends'"):
        config_module.preset_layers("loop_a", "small", "builtin")


def test_enum_values_are_checked_when_the_config_loads():
    with pytest.raises(ValueError, match=r"train.sampler must be one of uniform, recency, dfs, got 'dsf'; "
                                         r"did you mean 'dfs'\?"):
        load_config("r2i", "debug", "builtin:recall/2", ["train.sampler=dsf"])
    with pytest.raises(ValueError, match="agent.world_model.head_input must be one of hz, h"):
        load_config("r2i", "debug", "builtin:recall/2", ["agent.world_model.head_input=zh"])


def test_enum_values_of_configs_built_in_code_are_checked_by_the_components():
    from ssmworld.dreamer.agent import Agent, AgentConfig
    from ssmworld.dreamer.world_model import WorldModel, WorldModelConfig

    with pytest.raises(ValueError, match="agent.world_model.stem_norm must be one of layer, rms, got 'lyer'; did you"):
        WorldModel({"x": 3}, 2, WorldModelConfig(stem_norm="lyer"))
    with pytest.raises(ValueError, match="agent.optimizer must be one of adam, laprop, got 'sgd'"):
        Agent({"x": 3}, 2, True, AgentConfig(optimizer="sgd"))


def test_core_options_are_one_typed_group_per_core():
    cfg = load_config("r2i", "debug", "builtin:recall/5", ["agent.world_model.s5={state_size: 16, n_layers: 2}"])
    assert (cfg.agent.world_model.s5.state_size, cfg.agent.world_model.s5.n_layers) == (16, 2)
    assert cfg.agent.world_model.s5.width == 16  # a mapping on a group keeps the keys it does not name
    assert cfg.agent.world_model.core_options is cfg.agent.world_model.s5
    with pytest.raises(ConfigError, match="state_size expects int"):
        load_config("r2i", "debug", overrides=["agent.world_model.s5.state_size=many"])
    with pytest.raises(ConfigError, match="did you mean 'zoh'"):
        load_config("r2i", "debug", overrides=["agent.world_model.s5.discretization=zho"])
    with pytest.raises(ConfigError, match="positive multiple of blocks"):  # the core's own checks, at load time
        load_config("dreamerv3", "debug", overrides=["agent.world_model.gru.blocks=3"])
    with pytest.raises(ConfigError, match="was renamed: use agent.world_model.s5.state_size"):
        load_config("r2i", "debug", overrides=["agent.world_model.core_cfg.state_size=4"])


def test_config_files_with_the_old_keys_still_load():
    from ssmworld.dreamer.imagination import ImaginationConfig

    tree = to_dict(load_config("dreamerv3", "debug", "builtin:recall/3"))
    del tree["agent"]["world_model"]["gru"]
    tree["agent"]["world_model"]["core_cfg"] = {"width": 24, "blocks": 3}
    agent = tree["agent"]
    del agent["imagination"]
    agent.update(horizon=9, imagination="context", imagination_context=5, imagination_starts=12)
    tree["train"]["imagination_contexts"] = "replay"
    cfg = from_dict(tree)
    assert (cfg.agent.world_model.gru.width, cfg.agent.world_model.gru.blocks) == (24, 3)
    assert cfg.agent.imagination == ImaginationConfig(horizon=9, starts="replay", context=5, count=12)


@pytest.mark.parametrize("size", ["debug", "small", "paper"])
def test_dreamerv3_is_r2i_with_another_core(size):
    """dreamerv3.yaml extends r2i.yaml: per suite, the resolved configs differ only in the core, the policy input,
    the GRU's options and, at the paper size, DreamerV3's own batch and replay schedule."""
    from ssmworld.runtime.config_file import flatten

    own = {"preset", "agent.world_model.core", "agent.policy_input"}
    if size == "paper":
        own |= {f"train.{k}" for k in ("batch_size", "sequence_length", "train_ratio", "replay_chunk",
                                        "replay_capacity")}
    for env in ("builtin:recall/5", "bsuite:memory_len/3", "popgym:RepeatPreviousEasy", "memorymaze:9x9",
                "dmc:walker_walk", "dmc_vision:walker_walk", "atari:Pong", "gym:CartPole-v1"):
        r2i = flatten(to_dict(load_config("r2i", size, env)))
        dv3 = flatten(to_dict(load_config("dreamerv3", size, env)))
        differ = {k for k in r2i if r2i[k] != dv3[k] and not k.startswith("agent.world_model.gru.")}
        assert differ <= own, (env, differ - own)
        assert dv3["agent.world_model.core"] == "gru" and dv3["agent.policy_input"] == "output"


@pytest.mark.parametrize("size,env", [("small", "popgym:RepeatPreviousEasy"), ("small", "bsuite:memory_len/3"),
                                      ("paper", "popgym:RepeatPreviousEasy"), ("paper", "bsuite:memory_len/3"),
                                      ("paper", "atari:Pong")])
def test_s5_keeps_r2is_hippo_blocks_of_16_states(size, env):
    """R2I's P=128 in 8 blocks: 16 states per HiPPO-LegS block. The small size's P=32 in 2 blocks keeps that; in 8
    blocks of 4 the fastest initial rotation is 4.6 dt per step and r2i small did not learn POPGym RepeatPrevious
    (docs/RESULTS.md, "POPGym: r2i and dreamerv3")."""
    s5 = load_config("r2i", size, env).agent.world_model.s5
    assert s5.state_size // s5.n_blocks == 16
