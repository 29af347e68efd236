"""Image encoder/decoder: shapes, Drama parameter counts, loss values, input checks and a small round trip."""

import pytest
import torch
import torch.nn.functional as F

from ssmworld.nn.conv import ImageDecoder, ImageEncoder, normalise_image


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _blocky_images(n: int = 8, res: int = 64, seed: int = 0) -> torch.Tensor:
    """n fixed random uint8 images (n, res, res, 3) made of 8x8 blocks (learnable within a few hundred steps)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, 8, 8, generator=g)
    return (F.interpolate(small, size=res, mode="nearest") * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


@pytest.mark.parametrize("style,res,feat", [("dreamerv3", 64, 4 * 4 * 8 * 4), ("dreamerv3", 32, 4 * 4 * 4 * 4),
                                            ("dreamerv3", 16, 4 * 4 * 2 * 4), ("drama", 64, 1024)])
def test_shapes_with_leading_dims(style, res, feat):
    depth = 4 if style == "dreamerv3" else None  # drama keeps its paper width: output 64*4*4 = 1024
    enc = ImageEncoder((res, res, 3), style, depth)
    dec = ImageDecoder(enc.output_dim, (res, res, 3), style, depth)
    assert enc.output_dim == feat
    for lead in [(5,), (2, 3)]:  # (B, H, W, C) and (B, T, H, W, C)
        x = torch.randint(0, 256, (*lead, res, res, 3), dtype=torch.uint8)
        f = enc(x)
        assert f.shape == (*lead, feat)
        y = dec(f)
        assert y.shape == (*lead, res, res, 3) and y.dtype == torch.float32
        assert dec.loss(y, x).shape == lead
    if style == "drama":  # sigmoid output: the [0, 1] space of x/255
        assert 0 <= y.min() and y.max() <= 1


def test_drama_parameter_counts_match_spec():
    # docs/REFERENCE.md drama.md §1: encoder 232,272; decoder 1,281,811 (conv biases kept, BatchNorm2d(64) after the Linear)
    assert _count(ImageEncoder((64, 64, 3), "drama")) == 232_272
    assert _count(ImageDecoder(1024, (64, 64, 3), "drama")) == 1_281_811
    # a channel-wise LayerNorm has the same 2 parameters per channel
    assert _count(ImageEncoder((64, 64, 3), "drama", norm="layer")) == 232_272


def test_dreamerv3_layout():
    enc = ImageEncoder((64, 64, 3), "dreamerv3", depth=32)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256] and all(c.bias is None for c in convs)
    assert enc.output_dim == 4 * 4 * 256
    dec = ImageDecoder(10, (64, 64, 3), "dreamerv3", depth=32)
    convts = [m for m in dec.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convts] == [128, 64, 32, 3]
    assert [c.bias is not None for c in convts] == [False, False, False, True]  # only the last has no norm


@pytest.mark.parametrize("style", ["dreamerv3", "drama"])
def test_uint8_and_float_inputs_give_same_features(style):
    enc = ImageEncoder((64, 64, 3), style, depth=4).eval()
    x = torch.randint(0, 256, (2, 3, 64, 64, 3), dtype=torch.uint8)
    torch.testing.assert_close(enc(x), enc(x.float()))
    torch.testing.assert_close(enc(x), enc(x.double()))


def test_dreamerv3_loss_hand_checked():
    dec = ImageDecoder(4, (8, 8, 1), "dreamerv3", depth=2)
    target = torch.zeros(2, 8, 8, 1, dtype=torch.uint8)
    target[0, 0, 0, 0] = 255  # normalised: 0.5 there, -0.5 elsewhere
    target[1] = 51  # 51/255 - 0.5 = -0.3
    pred = torch.zeros(2, 8, 8, 1)
    pred[0, 0, 0, 0] = 0.5
    # image 0: 63 pixels off by 0.5 -> 63 * 0.25; image 1: 64 pixels off by 0.3 -> 64 * 0.09
    torch.testing.assert_close(dec.loss(pred, target), torch.tensor([63 * 0.25, 64 * 0.09]))
    torch.testing.assert_close(normalise_image(target[:1, :1, :2], "dreamerv3").flatten(), torch.tensor([0.5, -0.5]))


def test_drama_loss_is_summed_squared_error_in_unit_range():
    dec = ImageDecoder(4, (64, 64, 3), "drama", depth=2)
    target = torch.full((1, 64, 64, 3), 255, dtype=torch.uint8)
    torch.testing.assert_close(dec.loss(torch.full((1, 64, 64, 3), 0.5), target), torch.tensor([64 * 64 * 3 * 0.25]))


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="square"):
        ImageEncoder((64, 32, 3))
    with pytest.raises(ValueError, match="4 \\* 2\\^k"):
        ImageEncoder((48, 48, 3))
    with pytest.raises(ValueError, match="4 \\* 2\\^k"):
        ImageDecoder(8, (4, 4, 3))
    with pytest.raises(ValueError, match="64, 64"):
        ImageEncoder((32, 32, 3), "drama")
    with pytest.raises(ValueError, match="style must be one of"):
        ImageEncoder((64, 64, 3), "atari")
    with pytest.raises(ValueError, match="norm must be one of"):
        ImageEncoder((64, 64, 3), norm="group")
    enc = ImageEncoder((16, 16, 3), depth=2)
    with pytest.raises(ValueError, match=r"expected images \(\.\.\., 16, 16, 3\)"):
        enc(torch.zeros(2, 16, 16, 1))  # wrong channel count at call time
    with pytest.raises(ValueError, match=r"expected images"):
        enc(torch.zeros(2, 3, 16, 16))  # channels-first
    dec = ImageDecoder(8, (16, 16, 3), depth=2)
    with pytest.raises(ValueError, match=r"expected features \(\.\.\., 8\)"):
        dec(torch.zeros(2, 7))


def test_batchnorm_statistics_are_buffers_and_modes_differ():
    enc = ImageEncoder((64, 64, 3), "drama", depth=2)
    assert any(k.endswith("running_mean") for k in enc.state_dict())
    x = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8)
    train_out = enc(x)  # batch statistics; also updates running ones
    assert not torch.allclose(train_out, enc.eval()(x))


@pytest.mark.parametrize("style,depth", [("dreamerv3", 8), ("drama", 4)])
def test_round_trip_training_lowers_loss(style, depth):
    torch.manual_seed(0)
    images = _blocky_images()
    enc = ImageEncoder((64, 64, 3), style, depth)
    dec = ImageDecoder(enc.output_dim, (64, 64, 3), style, depth)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
    losses = []
    for _ in range(200):
        loss = dec.loss(dec(enc(images)), images).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    target = normalise_image(images, style)
    mean_image_loss = (target - target.mean(0)).square().sum((1, 2, 3)).mean().item()  # ~900: no per-image info
    assert losses[-1] < 0.2 * losses[0] and losses[-1] < 0.2 * mean_image_loss, (losses[0], losses[-1])
