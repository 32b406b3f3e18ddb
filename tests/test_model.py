"""Every registered architecture: output shape, no NaN, determinism; the published size."""

import pytest
import torch

from colorize_core.model import ARCHITECTURES, ModelConfig, build_model, count_parameters


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_shape_nan_and_determinism(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch, width=0.125, num_classes=17)).eval()
    lightness = torch.rand(2, 1, 48, 64) * 100
    with torch.no_grad():
        out = model(lightness)
        again = model(lightness)
    assert out.shape == (2, 17, 12, 16)
    assert torch.isfinite(out).all()
    assert torch.equal(out, again)
    torch.manual_seed(0)
    twin = build_model(ModelConfig(arch, width=0.125, num_classes=17)).eval()
    with torch.no_grad():
        assert torch.equal(twin(lightness), out)


def test_full_width_eccv16_is_the_published_network():
    model = build_model(ModelConfig("eccv16", width=1.0, num_classes=313))
    assert 32.0e6 < count_parameters(model) < 32.5e6  # Zhang et al.: 32 M
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19 + 2 + 1  # blocks 1-7: 2+2+3+3+3+3+3; block 8: two 3×3 and the 1×1
    assert [c.dilation[0] for c in convs[10:16]] == [2] * 6  # blocks 5 and 6
    assert sum(c.stride[0] == 2 for c in convs) == 3


def test_input_must_be_a_multiple_of_eight():
    model = build_model(ModelConfig(width=0.125, num_classes=5))
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.zeros(1, 1, 30, 32))
