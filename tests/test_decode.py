"""Annealed-mean decoding and full-resolution output against hand computations and references."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import colourful_rgb, tiny_checkpoint
from PIL import Image
from skimage.color import rgb2lab

from colorize_core.inference.annealed_mean import ab_from_log_probs, ab_from_probs, compose
from colorize_core.inference.colorizer import Colorizer, lightness_of

CENTRES = torch.tensor([[-40.0, 30.0], [0.0, 0.0], [60.0, 10.0], [20.0, -50.0]])


def test_t1_is_the_probability_weighted_mean():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 4, 1, 1)
    expected = (probs.view(4, 1) * CENTRES).sum(0)
    assert torch.allclose(ab_from_probs(probs, CENTRES, 1.0).view(2), expected, atol=1e-5)


def test_t0_is_exactly_the_arg_max_centre():
    probs = torch.tensor([0.1, 0.2, 0.45, 0.25]).view(1, 4, 1, 1)
    assert torch.equal(ab_from_probs(probs, CENTRES, 0.0).view(2), CENTRES[2])


def test_chroma_rises_as_temperature_falls_on_a_bimodal_distribution():
    # Two vivid, opposite modes and a gray bin: the mean is near gray, the mode is vivid.
    probs = torch.tensor([0.45, 0.15, 0.40, 0.0]).view(1, 4, 1, 1)
    chroma = [ab_from_probs(probs, CENTRES, T).norm().item() for T in (1.0, 0.38, 0.2, 0.09, 0.0)]
    assert all(a < b for a, b in zip(chroma, chroma[1:])), chroma
    assert chroma[-1] == pytest.approx(CENTRES[0].norm().item())


@pytest.mark.parametrize("T", [1e-4, 0.01, 0.09])
def test_stable_at_tiny_temperature_with_zero_probabilities(T):
    probs = torch.tensor([0.0, 0.3, 0.7, 0.0]).view(1, 4, 1, 1)
    ab = ab_from_probs(probs, CENTRES, T)
    assert torch.isfinite(ab).all()
    if T <= 0.01:
        assert torch.allclose(ab.view(2), CENTRES[2], atol=1e-3)  # the limit is the mode
    logits = torch.randn(2, 4, 3, 3) * 50  # confident network output
    assert torch.isfinite(ab_from_log_probs(torch.log_softmax(logits, 1), CENTRES, T)).all()


def test_negative_temperature_is_refused():
    with pytest.raises(ValueError, match="temperature"):
        ab_from_log_probs(torch.zeros(1, 4, 1, 1), CENTRES, -0.5)


def test_upsampling_matches_torch_bilinear():
    rng = np.random.default_rng(0)
    grid = rng.uniform(-60, 60, (8, 8, 2)).astype(np.float32)
    lightness = np.full((53, 77), 60.0, np.float32)
    reference = F.interpolate(
        torch.from_numpy(grid).permute(2, 0, 1)[None], size=(53, 77), mode="bilinear", align_corners=False
    )
    reference_lab = np.concatenate([lightness[..., None], reference[0].permute(1, 2, 0).numpy()], -1)
    composed_lab = rgb2lab(compose(lightness, grid, strip_pixels=500) / 255.0)
    # Compare chroma where no gamut mapping was needed (8-bit rounding only).
    close = np.linalg.norm(composed_lab[..., 1:] - reference_lab[..., 1:], axis=-1) < 1.5
    assert close.mean() > 0.95


@pytest.mark.slow
def test_full_resolution_output_keeps_size_and_lightness(tmp_path):
    colorizer = Colorizer.from_checkpoint(tiny_checkpoint(tmp_path / "tiny.pt"))
    rgb = colourful_rgb(171, 303, seed=3)  # odd size, not the network's
    colours = colorizer.colorize(Image.fromarray(rgb), T=[0.0, 0.38, 1.0])
    expected_l = rgb2lab(rgb / 255.0)[..., 0]
    for colour in colours:
        assert colour.size == (303, 171)
        assert np.abs(rgb2lab(np.asarray(colour) / 255.0)[..., 0] - expected_l).max() < 0.6  # 8-bit rounding

    gray16 = (np.linspace(0, 1, 64 * 90).reshape(64, 90) ** 2 * 65535).astype(np.uint16)
    colour = colorizer.colorize(gray16, T=0.38)
    expected_l = rgb2lab(np.repeat((gray16 / 65535.0)[..., None], 3, -1))[..., 0]
    assert np.abs(rgb2lab(np.asarray(colour) / 255.0)[..., 0] - expected_l).max() < 0.6
    assert np.abs(lightness_of(Image.fromarray(gray16)) - expected_l).max() < 1e-3  # 16 bits kept


def test_checkpoints_with_the_same_weights_are_decoded_once(tmp_path):
    """best.pt and last.pt of a run whose last epoch was its best: one folder of images, and the
    manifest says which name stands for which; a checkpoint with other weights is decoded."""
    import dataclasses
    import json

    from colorize_core.checkpoint import load_checkpoint
    from colorize_core.config import DecodeParams, Params
    from colorize_core.inference.decode_stage import run_decode
    from helpers import colour_photos, tiny_checkpoint, write_lists

    models = tmp_path / "models"
    models.mkdir()
    best = load_checkpoint(tiny_checkpoint(models / "best.pt", seed=0))
    dataclasses.replace(best, kind="last", epoch=7, val_loss=2.5).save(models / "last.pt")  # same weights
    tiny_checkpoint(models / "other.pt", seed=1)
    lists = write_lists(tmp_path / "lists", [], test=colour_photos(tmp_path / "photos", 2))
    params = Params(T=0.38, temperatures=[0.38], decode=DecodeParams(checkpoints=["best", "last", "other"]))

    manifest = run_decode(params, lists, models, tmp_path / "decoded")

    assert manifest["checkpoints"] == ["best", "other"] and manifest["same_as"] == {"last": "best"}
    assert json.loads((tmp_path / "decoded" / "manifest.json").read_text())["same_as"] == {"last": "best"}
    assert sorted(p.name for p in (tmp_path / "decoded").iterdir() if p.is_dir()) == ["best", "other"]
    assert len(list((tmp_path / "decoded" / "best" / "T0.38").glob("*.png"))) == 2


def test_the_compiled_hue_is_numpys_arctan2():
    """The gamut mapping's branch-free hue (a Taylor series of atan) against np.arctan2 taken
    modulo 2π: random ab, the axes, signed zeros and the diagonals, within 1e-10 rad."""
    from colorize_core.inference.compose_kernel import _hue

    rng = np.random.default_rng(0)
    a, b = rng.uniform(-130, 130, 20_000), rng.uniform(-130, 130, 20_000)
    edges = [(0.0, 0.0), (-0.0, 0.0), (0.0, -0.0), (-0.0, -0.0), (1.0, 0.0), (-1.0, 0.0), (-1.0, -0.0), (0.0, 1.0),
             (0.0, -1.0), (1.0, 1.0), (-1.0, 1.0), (1.0, -1.0), (-1.0, -1.0), (5.0, -1e-300), (1e-300, 7.0)]  # fmt: skip
    a, b = np.concatenate([a, [e[0] for e in edges]]), np.concatenate([b, [e[1] for e in edges]])
    expected = np.mod(np.arctan2(b, a), 2 * np.pi)
    hues = np.array([_hue(x, y) for x, y in zip(a, b)])
    assert np.abs(hues - expected).max() < 1e-10


@pytest.mark.parametrize("T", [0.0, 0.09, 0.7, 1.0])
def test_the_compiled_composition_equals_the_reference(T):
    """compose_kernel.compose_fast (Numba, one pass) against annealed_mean.compose (numpy): a real
    photo colorized by the bundled model (at T = 0 many pixels need the gamut mapping), and a grid
    of extreme ab over every lightness. In-gamut pixels are the same float32 arithmetic in the
    same order; a gamut-mapped one may differ by one 8-bit level (the kernel's hue, a series for
    atan, and its 3×3 product may round their last bits apart from numpy's: none of this photo's
    135,300 pixels did at these T when this was written)."""
    from colorize_core.inference.colorizer import network_lightness
    from colorize_core.inference.compose_kernel import compose_fast, numba_available
    from helpers import skimage_photo

    assert numba_available()  # a dependency: without it the check would compare the reference with itself
    colorizer = Colorizer.pretrained("cpu")
    picture = Image.fromarray(skimage_photo("chelsea"))
    padded, (h, w) = network_lightness(picture, colorizer.size, colorizer.model.input_multiple)
    grid = colorizer.ab_grids(colorizer.log_probs(padded[None]), [T])[0][0][: h // 4, : w // 4]
    lightness = lightness_of(picture)
    ramp = np.linspace(0, 100, 301, dtype=np.float32)[:, None].repeat(257, axis=1)  # L from 0 to 100
    extreme = np.random.default_rng(int(T * 100)).uniform(-128, 127, (9, 9, 2)).astype(np.float32)
    for L, ab in ((lightness, grid), (ramp, extreme)):
        difference = np.abs(compose_fast(L, ab).astype(int) - compose(L, ab).astype(int)).max(axis=-1)
        assert difference.max() <= 1 and (difference > 0).mean() < 1e-4
