"""World model: KL balancing with free bits (hand-computed), and one full update for every core."""

import math

import pytest
import torch

from ssmworld.dreamer.world_model import WorldModel, WorldModelConfig, kl_balance
from ssmworld.nn import CategoricalLatent


def latent(logits):
    return CategoricalLatent(logits.unflatten(-1, (1, 2)), unimix=0.0)


def test_kl_balance_hand_computed_with_free_bits():
    post = torch.log(torch.tensor([[0.5, 0.5]])).requires_grad_()
    prior = torch.log(torch.tensor([[0.25, 0.75]])).requires_grad_()
    kl = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)  # KL(q || p) = 0.5 ln(4/3) = 0.1438
    loss, dyn, rep = kl_balance(latent(post), latent(prior), 0.5, 0.1, free_bits=0.0)
    assert dyn.item() == pytest.approx(kl) and rep.item() == pytest.approx(kl)
    assert loss.item() == pytest.approx(0.6 * kl)
    clipped, _, _ = kl_balance(latent(post), latent(prior), 0.5, 0.1, free_bits=1.0)
    assert clipped.item() == pytest.approx(0.6)  # below the free bits: constant, no gradient
    # dyn trains only the prior, rep only the posterior
    loss_dyn, _, _ = kl_balance(latent(post), latent(prior), 1.0, 0.0, free_bits=0.0)
    loss_dyn.sum().backward()
    assert post.grad is None or post.grad.abs().sum() == 0
    assert prior.grad.abs().sum() > 0
    prior.grad = None
    loss_rep, _, _ = kl_balance(latent(post), latent(prior), 0.0, 1.0, free_bits=0.0)
    loss_rep.sum().backward()
    assert prior.grad is None or prior.grad.abs().sum() == 0
    assert post.grad.abs().sum() > 0


def test_kl_balance_free_bits_over_the_batch_clip_the_mean():
    """Drama clips each KL's batch mean: a step below the free bits still trains when the mean is above them."""
    post = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))  # 2 steps of 1 group x 2 classes
    prior = torch.log(torch.tensor([[0.5, 0.5], [0.1, 0.9]])).requires_grad_()
    kl1 = 0.9 * math.log(9) + 0.1 * math.log(1 / 9)  # step 1: 1.758; step 0: 0
    loss, dyn, _ = kl_balance(latent(post), latent(prior), 1.0, 0.0, free_bits=0.5, over="batch")
    assert loss.shape == () and loss.item() == pytest.approx(kl1 / 2)  # mean 0.879 > 0.5: not clipped
    assert dyn.tolist() == pytest.approx([0.0, kl1])
    per_step, _, _ = kl_balance(latent(post), latent(prior), 1.0, 0.0, free_bits=0.5)
    assert per_step.tolist() == pytest.approx([0.5, kl1])  # per step, step 0 is clipped up to the free bits
    loss.backward()
    assert prior.grad[1].abs().sum() > 0
    clipped, _, _ = kl_balance(latent(post), latent(prior), 1.0, 0.0, free_bits=1.0, over="batch")
    assert clipped.item() == 1.0  # mean below the free bits: constant


def test_kl_balance_shared_distributions_equal_the_definition():
    """One q and one p serve both KLs: the loss and gradients of the definition, four distributions from stopped
    logits, in float64 (with the 1% unimix, free bits that clip some steps and not others)."""
    torch.manual_seed(0)
    post_logits = torch.randn(3, 5, 4 * 6, dtype=torch.float64, requires_grad=True)
    prior_logits = torch.randn(3, 5, 4 * 6, dtype=torch.float64, requires_grad=True)

    def mixed(logits):
        return CategoricalLatent(logits.unflatten(-1, (4, 6)), unimix=0.01)

    def definition():
        dyn = mixed(post_logits.detach()).kl(mixed(prior_logits))
        rep = mixed(post_logits).kl(mixed(prior_logits.detach()))
        return 0.5 * dyn.clamp(min=3.0) + 0.1 * rep.clamp(min=3.0)

    want = definition()
    assert 0 < (want > 0.6 * 3.0 + 1e-9).sum() < want.numel()  # both sides of the free bits
    want_grads = torch.autograd.grad(want.sum(), (post_logits, prior_logits))
    got, dyn, rep = kl_balance(mixed(post_logits), mixed(prior_logits), 0.5, 0.1, free_bits=3.0)
    got_grads = torch.autograd.grad(got.sum(), (post_logits, prior_logits))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-15)
    torch.testing.assert_close(dyn, rep, rtol=0, atol=0)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-15)


CORE_CFGS = {
    "s5": dict(width=32, state_size=16, n_layers=2),
    "mamba": dict(width=32, d_state=4, n_layers=1),
    "mamba2": dict(width=32, headdim=16, d_state=8, n_layers=1, chunk_size=8),
    "gru": dict(width=32, blocks=4),
    "attention": dict(width=32, n_heads=2, n_layers=1),
}


def batch(B=3, T=12, A=4, continuous=False):
    action = torch.rand(B, T, A) * 2 - 1 if continuous else torch.nn.functional.one_hot(
        torch.randint(A, (B, T)), A).float()
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[1, 5] = True
    return dict(obs={"vector": torch.randn(B, T, 5), "cue": torch.randint(0, 2, (B, T, 2)).float()},
                action=action, reward=torch.randn(B, T), is_first=is_first,
                is_terminal=torch.zeros(B, T, dtype=torch.bool))


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("core", CORE_CFGS)
def test_one_update_for_every_core(core, continuous):
    torch.manual_seed(0)
    cfg = WorldModelConfig.with_core(core, CORE_CFGS[core], units=32, latent_groups=4, latent_classes=4)
    model = WorldModel({"vector": 5, "cue": 2}, action_dim=4, cfg=cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = batch(continuous=continuous)
    loss, metrics, out = model.loss(data)
    assert out["h"].shape == (3, 12, model.core.output_dim) and out["z"].shape == (3, 12, 16)
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in metrics.values())
    opt.zero_grad()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for n, g in grads.items() if n.startswith(("core.", "prior.", "encoder."))), \
        [n for n, g in grads.items() if g is None]
    before = [p.detach().clone() for p in model.core.parameters()]
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.core.parameters()))
    loss2, _, _ = model.loss(data)
    assert torch.isfinite(loss2)


def test_missing_observation_key_is_named():
    model = WorldModel({"vector": 5}, 2, WorldModelConfig.with_core("gru", dict(width=16, blocks=2), units=16))
    with pytest.raises(KeyError, match="vector"):
        model.encode({"image": torch.zeros(1, 1, 5)})


@pytest.mark.parametrize("core", ["s5", "gru", "mamba2"])
def test_imagination_first_step_matches_the_training_pass(core):
    """From the posterior state at t, imagining the replayed action a_t gives the h_{t+1} of the parallel pass."""
    torch.manual_seed(1)
    cfg = WorldModelConfig.with_core(core, CORE_CFGS[core], units=32, latent_groups=4, latent_classes=4)
    model = WorldModel({"vector": 5, "cue": 2}, action_dim=4, cfg=cfg)
    data = batch()
    with torch.no_grad():
        out = model.observe(data["obs"], data["action"], data["is_first"], all_states=True)
        B, T = data["is_first"].shape
        flat = {k: v.flatten(0, 1) for k, v in out["state"].items()}  # B*T starts
        actions = data["action"].flatten(0, 1)
        imagined = model.imagine(out["h"].flatten(0, 1), out["z"].flatten(0, 1), flat, lambda s: actions, horizon=3)
    assert imagined["h"].shape == (4, B * T, model.core.output_dim) and imagined["action"].shape == (3, B * T, 4)
    assert imagined["reward"].shape == imagined["cont"].shape == (3, B * T)
    assert imagined["x"].shape == (4, B * T, model.core.state_features_dim)
    next_h = imagined["h"][1].unflatten(0, (B, T))[:, :-1]  # from s_t with a_t
    expected = out["h"][:, 1:]
    valid = ~data["is_first"][:, 1:]  # the training pass resets where an episode starts
    torch.testing.assert_close(next_h[valid], expected[valid], atol=1e-4, rtol=0)
    # Without the core's state features (an actor-critic on (h, z)): the same rollout, no "x", and the policy is
    # not given it
    with torch.no_grad():
        torch.manual_seed(3)
        kept = model.imagine(out["h"].flatten(0, 1), out["z"].flatten(0, 1), flat, lambda s: actions, horizon=3)
        torch.manual_seed(3)
        lean = model.imagine(out["h"].flatten(0, 1), out["z"].flatten(0, 1), flat,
                             lambda s: actions if "x" not in s else None, horizon=3,
                             policy_reads_x=False)
    assert "x" not in lean and sorted(lean) == sorted(set(kept) - {"x"})
    for key in lean:
        torch.testing.assert_close(lean[key], kept[key], atol=0, rtol=0)


@pytest.mark.parametrize("core", ["s5", "gru"])
def test_memoryless_control_forgets_the_past(core):
    """memory=False: h_t depends on (z_{t-1}, a_{t-1}) only, in the training pass and in imagination."""
    torch.manual_seed(2)
    cfg = WorldModelConfig.with_core(core, CORE_CFGS[core], units=32, latent_groups=4, latent_classes=4,
                           memory=False)
    model = WorldModel({"vector": 5, "cue": 2}, action_dim=4, cfg=cfg)
    data = batch()
    other = {k: (dict(v) if isinstance(v, dict) else v.clone()) for k, v in data.items()}
    other["obs"]["vector"] = other["obs"]["vector"].clone()
    other["obs"]["vector"][:, :5] += 3.0  # a different past up to t=4
    other["action"] = other["action"].clone()
    other["action"][:, :5] = other["action"][:, :5].roll(1, -1)
    with torch.no_grad():
        torch.manual_seed(3)
        h1 = model.observe(data["obs"], data["action"], data["is_first"])["h"]
        torch.manual_seed(3)
        h2 = model.observe(other["obs"], other["action"], other["is_first"])["h"]
    assert not torch.allclose(h1[:, 3], h2[:, 3])
    torch.testing.assert_close(h1[:, 7:], h2[:, 7:])  # from t=6 on the inputs (z_{t-1}, a_{t-1}) agree
    memory = WorldModel({"vector": 5, "cue": 2}, action_dim=4, cfg=WorldModelConfig.with_core(
        core, CORE_CFGS[core], units=32, latent_groups=4, latent_classes=4))
    memory.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.manual_seed(3)
        h3 = memory.observe(other["obs"], other["action"], other["is_first"])["h"]
    assert not torch.allclose(h1[:, 7:], h3[:, 7:])  # with memory the past matters


@pytest.mark.parametrize("style", ["dreamerv3", "drama"])
def test_image_and_vector_observations(style):
    """Images (uint8, channels last) go through the CNN encoder and decoder; vectors through the MLPs."""
    torch.manual_seed(0)
    size = 16 if style == "dreamerv3" else 64  # Drama's CNN is for 64x64 only
    cfg = WorldModelConfig.with_core("gru", CORE_CFGS["gru"], units=32, latent_groups=4, latent_classes=4,
                           image_style=style, cnn_depth=4)
    model = WorldModel({"image": (size, size, 3), "vector": 5}, action_dim=4, cfg=cfg)
    data = batch(B=2, T=8)
    data["obs"] = {"image": torch.randint(0, 256, (2, 8, size, size, 3), dtype=torch.uint8),
                   "vector": torch.randn(2, 8, 5)}
    loss, metrics, out = model.loss(data)
    loss.backward()
    assert out["h"].shape[:2] == (2, 8) and torch.isfinite(loss)
    assert all(p.grad is not None for p in model.image_encoders.parameters())
    assert all(p.grad is not None for p in model.image_decoders.parameters())
    assert metrics["loss_decoder"] > 0
    with pytest.raises(ValueError, match="vectors .* or images"):
        WorldModel({"grid": (3, 3)}, 4, cfg)


def test_vector_units_and_decoder_layers_shape_the_vector_encoder_and_decoder():
    """R2I's bsuite/dmc configs: encoder and decoder MLPs 1024 wide and 5 deep beside 2 x 512 heads."""
    cfg = WorldModelConfig.with_core("gru", {"width": 16}, units=16, latent_groups=2, latent_classes=4,
                                     vector_units=24, encoder_layers=3, decoder_layers=4, head_layers=1)
    wm = WorldModel({"vector": 5}, 3, cfg)
    encoder = [m for m in wm.encoder.modules() if isinstance(m, torch.nn.Linear)]
    decoder = [m for m in wm.decoder["vector"].modules() if isinstance(m, torch.nn.Linear)]
    reward = [m for m in wm.reward_head.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in encoder] == [24, 24, 24]
    assert [m.out_features for m in decoder] == [24, 24, 24, 24, 5]
    assert [m.out_features for m in reward] == [16, 255]  # the heads keep units and head_layers


def test_continue_targets_and_start_flags_follow_is_terminal():
    """The continue head learns c = 1 - is_terminal (hand-computed BCE on its own logits); imagination starts carry
    the same flag: posterior starts per step, context starts at each window's last step."""
    from ssmworld.dreamer.imagination import ImaginationConfig, choose_starts

    torch.manual_seed(0)
    model = WorldModel({"vector": 5, "cue": 2}, action_dim=4, cfg=WorldModelConfig.with_core(
        "gru", CORE_CFGS["gru"], units=32, latent_groups=4, latent_classes=4))
    data = batch()
    data["is_terminal"][0, 4] = data["is_terminal"][2, 11] = True
    _, metrics, out = model.loss(data, all_states=True)
    logits = model.cont_head(model.head_features(out["h"], out["z"])).squeeze(-1)
    target = 1.0 - data["is_terminal"].float()
    expected = -(target * torch.log(torch.sigmoid(logits)) + (1 - target) * torch.log(1 - torch.sigmoid(logits)))
    assert metrics["loss_cont"].item() == pytest.approx(expected.mean().item(), rel=1e-5)
    starts = choose_starts(model, ImaginationConfig(starts="posterior"), data, out)
    assert starts.cont.tolist() == target.flatten().tolist()
    windows = {k: (v[:, 2:5] if k != "obs" else {o: x[:, 2:5] for o, x in v.items()}) for k, v in data.items()}
    with torch.no_grad():
        _, _, _, cont = model.context_windows(windows)  # windows of steps 2..4: row 0 ends on its terminal
    assert cont.tolist() == [0.0, 1.0, 1.0]
