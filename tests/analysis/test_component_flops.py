"""No op of any registered component goes uncounted: kernel nets, convs, backbones, trained and baked.

Parametrised over the registries (timm style), so components added later are covered too.
"""
import functools
import importlib
import inspect
import re
import typing
from pathlib import Path

import pytest
import torch

from flexcore.analysis import FlexcoreFlopCountAnalysis, assert_all_ops_counted, flop_report
from flexcore.registry import BACKBONES, CONVS, KERNEL_NETS, import_builtins

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[2]
import_builtins()
for _init in sorted(REPO.glob("projects/*/*/__init__.py")):  # shipped plugins count as built-in too
    if _init.parent.name != "tests":
        importlib.import_module(f"flexcore.projects.{_init.parent.name}")

SIZES = {1: (16,), 2: (8, 8), 3: (5, 5, 5)}
# Small settings for whichever of these a backbone accepts (sizes do not change which ops run).
TINY_BACKBONE = {"hidden_channels": 4, "num_blocks": 1, "block_width_factors": None, "base_width": 4, "depth": 8,
                 "arch": "resnet10"}
TINY_KERNEL_NET = {"hidden_channels": 8}


def _tiny_conv(name):
    """Conv factory with a narrow default kernel net where the conv takes one."""
    raw = CONVS.get_raw(name)
    if "kernel_net" not in inspect.signature(raw).parameters:
        return CONVS.get(name)
    return functools.partial(CONVS.get(name), kernel_net=functools.partial(KERNEL_NETS.get("MAGNet"), hidden_channels=4))


def _accepted(raw, options):
    params = inspect.signature(raw).parameters  # the raw factory: gin's wrapper hides it
    return {k: v for k, v in options.items() if k in params}


def _distinct_backbones():
    """Backbone names, leaving out factories that only preset another registered class
    (``CIFARResNet56`` returns a ``CIFARResNet``: same ops as ``CIFARResNet``)."""
    classes = {BACKBONES.get_raw(n) for n in BACKBONES.list() if inspect.isclass(BACKBONES.get_raw(n))}
    names = []
    for name in BACKBONES.list():
        raw = BACKBONES.get_raw(name)
        if not inspect.isclass(raw):
            try:
                returned = typing.get_type_hints(raw).get("return")
            except Exception:  # noqa: BLE001 - unresolvable hints: test the factory
                returned = None
            if returned in classes:
                continue
        names.append(name)
    return names


# How a component declines a setting it does not build (backbones' check_dim, SRFConv's centred
# basis). Only these skip; any other ValueError is a failure of the component.
_DECLINED = re.compile(r"builds for dim in \(.*\) .*got dim=\d|causal=True is not supported")


def _declined(exc: ValueError) -> str:
    reason = str(exc).splitlines()[0]
    if not _DECLINED.search(reason):
        raise exc
    return reason


def _build(registry, name, *args, **options):
    try:
        return registry.get(name)(*args, **_accepted(registry.get_raw(name), options))
    except ValueError as exc:
        pytest.skip(_declined(exc))


def _check(report, what):
    assert not report.train.unsupported_ops(), f"{what} (train): {dict(report.train.unsupported_ops())}"
    assert not report.inference.unsupported_ops(), f"{what} (baked): {dict(report.inference.unsupported_ops())}"
    assert report.totals()["inference"]["total"] > 0


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("name", KERNEL_NETS.list())
def test_kernel_net_ops_all_counted(name, dim):
    net = _build(KERNEL_NETS, name, dim, 6, **TINY_KERNEL_NET)
    positions = torch.rand(1, dim, *SIZES[dim]) * 2 - 1
    for mode in (True, False):
        flops = FlexcoreFlopCountAnalysis(net.train(mode), (positions,)).uncalled_modules_warnings(False)
        assert_all_ops_counted(flops, f"{name} dim={dim} train={mode}")
        assert flops.total() > 0


@pytest.mark.parametrize("fft", [False, True])
@pytest.mark.parametrize("dim,causal", [(1, True), (1, False), (2, False), (3, False)])
@pytest.mark.parametrize("name", CONVS.list())
def test_conv_ops_all_counted(name, dim, causal, fft):
    conv = _build(CONVS, name, 3, 4, dim, causal=causal, fft=fft)
    report = flop_report(conv, (torch.randn(2, 3, *SIZES[dim]),), strict=True)
    _check(report, f"{name} dim={dim} causal={causal} fft={fft}")


@pytest.mark.parametrize("kernel_net", KERNEL_NETS.list())
@pytest.mark.parametrize("conv", [c for c in CONVS.list() if "kernel_net" in inspect.signature(CONVS.get_raw(c)).parameters])
def test_every_kernel_net_inside_every_continuous_conv(conv, kernel_net):
    layer = _build(CONVS, conv, 3, 4, 2, kernel_net=KERNEL_NETS.get(kernel_net))
    report = flop_report(layer, (torch.randn(1, 3, 8, 8),), strict=True)
    _check(report, f"{conv}({kernel_net})")
    assert report.kernel_flops, "a continuous conv reports its kernel-generation cost"


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("backbone", _distinct_backbones())
def test_backbone_ops_all_counted(backbone, dim):
    """Every backbone in every dimensionality it builds, with the paper's FlexConv."""
    model = _build(BACKBONES, backbone, 2, 5, dim, conv=_tiny_conv("FlexConv"), **TINY_BACKBONE)
    report = flop_report(model, (torch.randn(1, 2, *SIZES[dim]),), strict=True)
    _check(report, f"{backbone} dim={dim}")


@pytest.mark.slow
@pytest.mark.parametrize("conv", CONVS.list())
@pytest.mark.parametrize("backbone", _distinct_backbones())
def test_every_conv_inside_every_backbone(backbone, conv):
    """The full product at each backbone's natural dimensionality (2-D images, 1-D for sequence nets)."""
    for dim in (2, 1):
        try:
            model = BACKBONES.get(backbone)(2, 5, dim, conv=_tiny_conv(conv),
                                            **_accepted(BACKBONES.get_raw(backbone), TINY_BACKBONE))
            break
        except ValueError as exc:
            reason = _declined(exc)
    else:
        pytest.skip(reason)
    report = flop_report(model, (torch.randn(1, 2, *SIZES[dim]),), strict=True)
    _check(report, f"{backbone} with {conv}, dim={dim}")


def test_registries_are_not_empty():
    assert KERNEL_NETS.list() and CONVS.list() and BACKBONES.list()
