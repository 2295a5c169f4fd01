"""Zoo behaviour beyond the reference vectors: registry, sizes, batches, training."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, randomize_constants

from irdeploy.model import available, create, record_of, specs

# Upstream MHNet registers these but never uses them (see irdeploy.model.mhnet).
UNUSED = {"mhnet": ("intro.", "stage1.ending.", "stage2.conv_dnc2.", "stage2.conv_dnc3.", "stage2.conv_dnc4.")}


def _final(out):
    return out[0] if isinstance(out, list) else out


def test_presets_listed() -> None:
    assert available()[:8] == ["m3snet-32", "m3snet-64", "mprnet-deblur", "mprnet-derain", "mprnet-denoise", "mhnet", "run-s", "run-b"]
    assert available() == [p.name for spec in specs() for p in spec.presets]


def test_unknown_names_and_arguments() -> None:
    with pytest.raises(ValueError, match="unknown model 'm3snet-16'; presets: m3snet-32"):
        create("m3snet-16")
    with pytest.raises(TypeError, match="m3snet: unknown argument.*widht.*accepted: img_channel, width"):
        create("m3snet", widht=16)


def test_preset_keywords_override() -> None:
    with torch.device("meta"):
        model = create("m3snet-32", width=16)
    assert model.intro.out_channels == 16
    assert record_of(model).config == {"arch": "m3snet", "width": 16} and record_of(model).name == "m3snet-32"


@pytest.mark.parametrize("arch", list(TINY))
@pytest.mark.parametrize("size", [(37, 45), (16, 16), (64, 24), (17, 81)])
def test_any_size_and_batch(arch: str, size: tuple[int, int]) -> None:
    model = randomize_constants(create(arch, **TINY[arch])).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        out = model(x)
        single = model(x[1:])
    outs = out if isinstance(out, list) else [out]
    assert all(o.shape == x.shape for o in outs)
    # batch items are independent
    assert torch.allclose(_final(out)[1:], _final(single), atol=1e-5)


def test_padding_does_not_leak_into_aligned_region() -> None:
    """The crop returns the same pixels the network computes on the padded input."""
    model = randomize_constants(create("m3snet", **TINY["m3snet"])).eval()
    x = torch.rand(1, 3, 30, 20)
    padded = torch.nn.functional.pad(x, (0, 12, 0, 2))
    with torch.no_grad():
        assert torch.allclose(model(x), model(padded)[..., :30, :20], atol=1e-6)


def test_tiny_inputs() -> None:
    m3 = create("m3snet", **TINY["m3snet"]).eval()
    with torch.no_grad():
        assert m3(torch.rand(1, 3, 1, 1)).shape == (1, 3, 1, 1)
    mpr = create("mprnet", **TINY["mprnet"]).eval()
    with pytest.raises(ValueError, match="1x1"):
        mpr(torch.rand(1, 3, 1, 1))


@pytest.mark.parametrize("arch", list(TINY))
def test_wrong_input_layout_is_one_line(arch: str) -> None:
    model = create(arch, **TINY[arch])
    with pytest.raises(ValueError, match="expects 3 input channels, got 1"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="NCHW"):
        model(torch.rand(3, 32, 32))


@pytest.mark.parametrize("arch", list(TINY))
def test_backward_reaches_every_used_parameter(arch: str) -> None:
    model = randomize_constants(create(arch, **TINY[arch])).train()
    x = torch.rand(2, 3, 32, 40)
    target = torch.rand_like(x)
    out = model(x)
    outs = out if isinstance(out, list) else [out]
    loss = sum(torch.sqrt((o - target) ** 2 + 1e-6).mean() for o in outs)  # Charbonnier, as the papers
    loss.backward()
    unused = UNUSED.get(arch, ())
    for name, param in model.named_parameters():
        if name.startswith(unused):
            assert param.grad is None, f"{name} was expected to be unused"
            continue
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"


def test_no_custom_autograd_functions() -> None:
    model = create("m3snet", **TINY["m3snet"])
    out = model(torch.rand(1, 3, 16, 16, requires_grad=True))
    seen, stack = set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        assert "BackwardCFunction" not in type(fn).__name__, type(fn).__name__
        stack.extend(f for f, _ in fn.next_functions)
