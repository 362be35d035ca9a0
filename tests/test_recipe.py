"""Each training ingredient against an independent oracle (hand computations, loops, real patches)."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from archspec.training.augment import flip_mask, normalize, random_shifts, translate, tta_logits  # noqa: E402
from archspec.cli.train import parse_settings  # noqa: E402
from archspec.language.errors import UsageError  # noqa: E402
from archspec.training.recipes import RECIPES, make_config  # noqa: E402
from archspec.training.loop import Lookahead, init_identity, init_whitening, lookahead_decay, lr_factor, make_optimizer  # noqa: E402
from conftest import CIFAR, EXAMPLES  # noqa: E402


def test_label_smoothing_matches_hand_computation():
    torch.manual_seed(0)
    logits, y, eps = torch.randn(5, 10), torch.tensor([0, 3, 9, 2, 2]), 0.2
    logp = logits.log_softmax(1)
    # smoothed target: (1 - eps) on the label plus eps spread evenly over all 10 classes
    hand = -((1 - eps) * logp[torch.arange(5), y] + eps * logp.mean(1)).mean()
    ours = nn.CrossEntropyLoss(label_smoothing=RECIPES["fast"].label_smoothing)(logits, y)
    assert torch.allclose(ours, hand, atol=1e-6)


def test_alternating_flip_flips_each_image_every_other_epoch():
    masks = torch.stack([flip_mask(1000, seed=3, epoch=e, mode="alternate") for e in range(6)])
    assert (masks[1:] != masks[:-1]).all()  # every image changes orientation at every epoch boundary
    assert 400 < int(masks[0].sum()) < 600  # the starting orientation is a fair coin per image
    assert torch.equal(masks[2], flip_mask(1000, seed=3, epoch=2, mode="alternate"))  # a function of (seed, epoch)
    assert not torch.equal(masks[0], flip_mask(1000, seed=4, epoch=0, mode="alternate"))


def test_random_flip_is_a_fresh_coin_per_epoch():
    a, b = flip_mask(1000, 0, 0, "random"), flip_mask(1000, 0, 1, "random")
    assert 400 < int((a != b).sum()) < 600
    assert not flip_mask(10, 0, 0, "none").any()


def test_translate_matches_per_image_slicing():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 8, 10, generator=g)
    shifts = random_shifts(64, 2, g)
    out = translate(x, 2, shifts)
    for i, (dy, dx) in enumerate(shifts.tolist()):
        padded = F.pad(x[i : i + 1], (2, 2, 2, 2), mode="reflect")[0]
        assert torch.equal(out[i], padded[:, 2 + dy : 2 + dy + 8, 2 + dx : 2 + dx + 10])
    assert torch.equal(translate(x, 0, shifts), x)


def test_normalize_is_channels_last_and_standardised():
    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    out = normalize(x, mean, std)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, (x.float() / 255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1), atol=1e-6)


def test_whitening_init_makes_real_patch_covariance_identity():
    if not CIFAR.is_dir():
        pytest.skip(f"real images not found at {CIFAR} (the shared CIFAR-10 JPEG copy)")
    from PIL import Image

    files = sorted((CIFAR / "train").glob("*/000[0-4].jpg"))  # 5 images from each class
    images = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files])
    x = normalize(images, torch.tensor([0.49, 0.48, 0.45]), torch.tensor([0.25, 0.24, 0.26]))
    conv = nn.Conv2d(3, 24, 2)
    init_whitening(conv, x, eps=0.0)
    with torch.no_grad():
        out = F.conv2d(x, conv.weight)  # no bias: the whitened patches themselves
    flat = out.permute(0, 2, 3, 1).reshape(-1, 24)
    cov = flat[:, :12].T @ flat[:, :12] / len(flat)
    assert torch.allclose(cov, torch.eye(12), atol=1e-2)
    assert torch.allclose(conv.weight[12:], -conv.weight[:12])  # the +/- pairs


def test_whitening_keeps_top_components_when_narrower():
    x = torch.randn(16, 3, 8, 8)
    x[:, 1] = x[:, 0] * 3  # a dominant direction
    conv = nn.Conv2d(3, 4, 2)
    init_whitening(conv, x)
    assert conv.weight.shape == (4, 3, 2, 2) and torch.isfinite(conv.weight).all()


def test_identity_init_passes_the_input_through():
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    init_identity(conv)
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(conv(x)[:, :8], x, atol=1e-6)


def test_lookahead_matches_hand_computed_average():
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    la = Lookahead(net)
    ema = 1.0
    for value, decay in ((3.0, 0.5), (-1.0, 0.9), (2.0, 0.0)):
        with torch.no_grad():
            net.weight.fill_(value)
        la.update(net, decay)
        ema = decay * ema + (1 - decay) * value
        assert math.isclose(net.weight.item(), ema, rel_tol=1e-6)  # the net continues from the average


def test_lookahead_schedule_ramps_cubically():
    cfg = RECIPES["fast"]
    assert lookahead_decay(0, 100, cfg) == 0.0
    assert math.isclose(lookahead_decay(100, 100, cfg), 0.95**5)
    assert math.isclose(lookahead_decay(50, 100, cfg), 0.95**5 / 8)


def test_tta_of_a_flip_symmetric_model_equals_plain_inference():
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 5))  # mirror-invariant
    x = torch.randn(4, 3, 8, 8)
    assert torch.allclose(tta_logits(net, x, 1), tta_logits(net, x, 0), atol=1e-6)


def test_tta_level_2_is_the_six_view_average():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    x = torch.randn(2, 3, 8, 8)
    net(x)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    views = [x, padded[..., :8, :8], padded[..., 2:, 2:]]
    weights = [0.5, 0.25, 0.25]
    hand = sum(w * (net(v) + net(v.flip(-1))) / 2 for w, v in zip(weights, views))
    assert torch.allclose(tta_logits(net, x, 2), hand, atol=1e-5)


def test_lr_schedule_warms_up_then_decays_linearly():
    cfg = RECIPES["fast"]
    total = 100
    assert math.isclose(lr_factor(0, total, cfg), cfg.lr_start)
    assert math.isclose(lr_factor(23, total, cfg), 1.0)
    assert math.isclose(lr_factor(total, total, cfg), cfg.lr_end)
    assert lr_factor(10, total, cfg) < lr_factor(20, total, cfg)
    assert lr_factor(60, total, cfg) > lr_factor(80, total, cfg)


def test_optimizer_decouples_weight_decay_and_scales_bn_bias_lr():
    cfg = make_config("fast", batch_size=512)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    net[1].weight.requires_grad_(False)  # as the fast recipe freezes BN scales
    opt = make_optimizer(net, cfg)
    bn, other = opt.param_groups
    assert [p.shape for p in bn["params"]] == [(4,)]  # the BN bias only
    assert math.isclose(bn["lr"], 64 * other["lr"])
    for group in (bn, other):  # per-step decay at peak lr is the same for both groups, scaled by batch/1024
        assert math.isclose(group["lr"] * group["weight_decay"], cfg.weight_decay * 512 / 1024)
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.85


def test_fast_recipe_is_airbench94():
    cfg = RECIPES["fast"]
    scale = 1 + 1 / (1 - 0.85)
    assert (cfg.batch_size, cfg.label_smoothing, cfg.momentum, cfg.bias_lr_scale) == (1024, 0.2, 0.85, 64.0)
    assert math.isclose(cfg.lr * scale, 11.5) and math.isclose(cfg.weight_decay * scale, 0.0153)
    assert cfg.flip == "alternate" and cfg.translate == 2 and cfg.tta == 2 and cfg.lookahead


def test_explicit_settings_override_the_recipe():
    cfg = make_config("fast", epochs=2, **parse_settings(["lookahead=false", "flip=random", "bn_momentum=none"]))
    assert cfg.epochs == 2 and cfg.lr == RECIPES["fast"].lr and not cfg.lookahead and cfg.flip == "random"
    assert cfg.bn_momentum is None


@pytest.mark.parametrize("bad", [["nope=1"], ["lookahead=maybe"], ["epochs"], ["tta=x"]])
def test_bad_settings_are_usage_errors(bad):
    with pytest.raises(UsageError):
        parse_settings(bad)


def test_unknown_recipe_and_bad_values():
    with pytest.raises(UsageError, match="unknown recipe"):
        make_config("slow")
    with pytest.raises(UsageError, match="flip"):
        make_config("default", flip="sideways")
    with pytest.raises(UsageError, match="positive"):
        make_config("default", epochs=0)


BAD_SETTINGS = [
    (["--lr", "nan"], "lr must be positive, in (0, 100], not nan"),
    (["--lr", "inf"], "lr must be positive, in (0, 100], not inf"),
    (["--lr", "1e308"], "lr must be positive, in (0, 100], not 1e+308"),
    (["--epochs", "nan"], "epochs must be positive, in (0, 10,000], not nan"),
    (["--seed", str(2**70)], f"seed must be in [0, {2**63 - 1:,}], not {2**70}"),
    (["--set", "momentum=nan"], "momentum must be in [0, 1), not nan"),
    (["--set", "momentum=2"], "momentum must be in [0, 1), not 2.0"),
    (["--set", "weight_decay=-1"], "weight_decay must be in [0, 1], not -1.0"),
    (["--set", "warmup_frac=2"], "warmup_frac must be in [0, 1], not 2.0"),
    (["--set", "logit_scale=0"], "logit_scale must be positive, in (0, 1,000], not 0.0"),
    (["--set", "bn_momentum=5"], "bn_momentum must be in [0, 1], not 5.0"),
    (["--set", "lookahead_every=0"], "lookahead_every must be in [1, 1,000,000], not 0"),
    (["--set", "label_smoothing=2"], "label_smoothing must be in [0, 1), not 2.0"),
    (["--set", "translate=-3"], "translate must be in [0, 64], not -3"),
    (["--set", "translate=1000"], "translate must be in [0, 64], not 1000"),
    (["--set", "tta=9"], "tta must be one of (0, 1, 2), not 9"),
]


@pytest.mark.parametrize("flags, message", BAD_SETTINGS, ids=[" ".join(f) for f, _ in BAD_SETTINGS])
def test_every_setting_is_range_checked_before_anything_runs(flags, message, tmp_path, capsys):
    """Each bad value is a usage error (exit 2) naming the allowed range, before the data is touched."""
    from archspec import cli

    code = cli.main(["train", str(EXAMPLES / "lenet.arch"), "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and err[0] == f"error: {message}", err
    assert err[1].startswith("help: ") and len(err) == 2
    assert not (tmp_path / "o").exists()


def test_lookahead_every_zero_was_a_zero_division():
    with pytest.raises(UsageError, match="lookahead_every"):
        make_config("fast", lookahead_every=0)
    assert make_config("fast", lookahead_every=1).lookahead_every == 1  # the edge of the range is allowed


def test_every_recipe_is_in_range():
    for name in RECIPES:
        assert make_config(name) == RECIPES[name]
