"""Check kernel nets and masks (plugins or built-ins) against their registry contracts.

``check_kernel_net("MyNet")`` / ``check_mask("MyMask")`` (or ``python -m flexcore.registry
check kernel_nets MyNet``) build the component for 1-D, 2-D and 3-D positions, check
output shapes and values, whether its values depend on the position only (noted, since
cropping evaluates sub-grids), that every trainable parameter receives a finite gradient (DDP refuses unused
parameters) and the optional hooks a convolution calls.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch
import torch.nn as nn

from flexcore.registry import KERNEL_NETS, MASKS
from flexcore.registry.checks import ContractReport

from .functional import rel_positions

__all__ = ["check_kernel_net", "check_mask", "GRIDS"]

# Non-square grids, so a net that mixes up axes gives the wrong shape.
GRIDS = {1: (9,), 2: (7, 5), 3: (5, 3, 7)}
OUT_CHANNELS = 6  # a convolution asks for C_out * C_in kernels, e.g. 3 * 2


def _resolve(component: Union[str, Callable[..., Any]], registry):
    if isinstance(component, str):
        target = registry.get_raw(component)
        return registry.name_of(target) or component, target
    return getattr(component, "__name__", repr(component)), component


def _build(report: ContractReport, label: str, factory, args, hp, signature: str):
    try:
        module = factory(*args, **hp)
    except Exception as exc:  # noqa: BLE001 - reported with its origin
        report.crashed(label, exc, f"the factory must build as {signature} for dim 1, 2 and 3")
        return None
    ok = report.check(isinstance(module, nn.Module), f"{label}: an nn.Module",
                      f"{label} built a {type(module).__name__}", "return a torch.nn.Module")
    return module if ok else None


def _check_gradients(report: ContractReport, label: str, module: nn.Module, out: torch.Tensor) -> None:
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    if not params:
        report.passed.append(f"{label}: no trainable parameters")
        return
    module.zero_grad(set_to_none=True)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=out.dtype)
    try:
        (out * weights).sum().backward()
    except Exception as exc:  # noqa: BLE001
        report.crashed(f"{label}: backward", exc, "build the output from differentiable torch operations")
        return
    unused = [n for n, p in params.items() if p.grad is None]
    bad = [n for n, p in params.items() if p.grad is not None and not torch.isfinite(p.grad).all()]
    report.check(not unused, f"{label}: every trainable parameter gets a gradient",
                 f"{label}: no gradient reaches {unused}",
                 "use every parameter in forward, or register it as a buffer (DDP fails on unused parameters)")
    report.check(not bad, f"{label}: gradients are finite", f"{label}: non-finite gradients in {bad}",
                 "avoid divisions by zero and overflowing exponentials at positions in [-1, 1]")


def _check_output(report, label, out, want) -> bool:
    if not report.check(isinstance(out, torch.Tensor) and tuple(out.shape) == want, f"{label}: output {want}",
                        f"{label}: output is {tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}, "
                        f"expected {want}", "return (1, channels, *grid) for positions (1, dim, *grid)"):
        return False
    return report.check(out.is_floating_point() and bool(torch.isfinite(out).all()), f"{label}: finite float values",
                        f"{label}: output is {out.dtype} with non-finite values or not floating point",
                        "return finite floating-point values for positions in [-1, 1]")


def _check_pointwise(report, label, module, positions, out) -> None:
    """Whether values at a position depend on the rest of the grid (convolutions evaluate cropped grids).

    Allowed (CKConv's MLP normalises over the grid positions, as the original does) but noted:
    such a kernel changes when the mask crops it.
    """
    inner = (slice(None), slice(None), *(slice(1, n - 1) for n in positions.shape[2:]))
    with torch.no_grad():
        cropped = module(positions[inner].contiguous())
    if torch.allclose(cropped, out.detach()[inner], rtol=1e-4, atol=1e-5):
        report.passed.append(f"{label}: values depend on the position only")
    else:
        report.notes.append(f"{label}: values depend on the whole grid (e.g. a norm over positions), "
                            "so a cropped kernel differs from the same taps of the full one")


def _check_forward(report, label: str, module, grid, channels: int, hint: str) -> Optional[torch.Tensor]:
    """Run ``module`` on the relative positions of ``grid``; check shape, pointwise use and
    gradients. Returns the positions, or None where the forward itself failed."""
    positions = rel_positions(grid)
    try:
        out = module(positions)
    except Exception as exc:  # noqa: BLE001 - any failure of a user's forward is reported
        report.crashed(f"{label} on positions {tuple(positions.shape)}", exc, hint)
        return None
    if _check_output(report, label, out, (1, channels, *grid)):
        _check_pointwise(report, label, module, positions, out)
        _check_gradients(report, label, module, out)
    return positions


def check_kernel_net(net: Union[str, Callable[..., Any]], **hp: Any) -> ContractReport:
    """Check the kernel-net contract (docs/contracts.md) for hyperparameters ``hp``; returns the report.

    Raises:
        flexcore.registry.checks.ContractError: listing every violation and its fix.
    """
    name, factory = _resolve(net, KERNEL_NETS)
    report = ContractReport(name, "kernel_nets")
    for dim, grid in GRIDS.items():
        label = f"{name}(dim={dim}, out_channels={OUT_CHANNELS})"
        module = _build(report, label, factory, (dim, OUT_CHANNELS), hp, "factory(dim, out_channels, **hp)")
        if module is None:
            continue
        if _check_forward(report, label, module, grid, OUT_CHANNELS,
                          "forward takes relative positions (1, dim, *grid) with values in [-1, 1]") is not None:
            _check_kernel_hooks(report, label, module, dim)
    return report.finish()


def _check_kernel_hooks(report: ContractReport, label: str, module: nn.Module, dim: int) -> None:
    if callable(getattr(module, "set_spatial_init", None)):
        try:
            module.set_spatial_init(0.125)
            report.passed.append(f"{label}: set_spatial_init(value) runs")
        except Exception as exc:  # noqa: BLE001
            report.crashed(f"{label}: set_spatial_init(0.125)", exc, "take one float: the mask's initial width")
    if callable(getattr(module, "frequency_terms", None)):
        try:
            terms = list(module.frequency_terms())
            ok = all(w.dim() == 2 and w.shape[1] == dim and (g is None or g.shape[0] == w.shape[0]) for w, g in terms)
        except Exception as exc:  # noqa: BLE001
            report.crashed(f"{label}: frequency_terms()", exc, "return a list of (W (H, dim), gamma (H, dim|1) or None)")
            return
        report.check(ok, f"{label}: frequency_terms() shapes", f"{label}: frequency_terms() has wrong shapes",
                     f"return a list of (W of shape (H, {dim}), gamma of shape (H, {dim}) or (H, 1) or None)")


def check_mask(mask: Union[str, Callable[..., Any]], **hp: Any) -> ContractReport:
    """Check the mask contract (docs/contracts.md) for hyperparameters ``hp``; returns the report.

    Raises:
        flexcore.registry.checks.ContractError: listing every violation and its fix.
    """
    name, factory = _resolve(mask, MASKS)
    report = ContractReport(name, "masks")
    cases = [(dim, False) for dim in GRIDS] + [(1, True)]
    for dim, causal in cases:
        label = f"{name}(dim={dim}, causal={causal})"
        module = _build(report, label, factory, (dim,), {"causal": causal, **hp}, "factory(dim, causal=False, **hp)")
        if module is None:
            continue
        grid = GRIDS[dim]
        positions = _check_forward(report, label, module, grid, 1,
                                   "forward takes positions (1, dim, *grid) and returns mask values (1, 1, *grid)")
        if positions is not None:
            _check_crop(report, label, module, positions, grid)
    return report.finish()


def _check_crop(report: ContractReport, label: str, module: nn.Module, positions, grid) -> None:
    try:
        slices = tuple(module.crop_bounds(positions))
    except Exception as exc:  # noqa: BLE001
        report.crashed(f"{label}: crop_bounds(positions)", exc,
                       "implement crop_bounds(positions) -> one slice per dim (derive from flexcore.layers.Mask)")
        return
    ok = len(slices) == len(grid) and all(
        isinstance(s, slice) and 0 <= s.indices(n)[0] < s.indices(n)[1] <= n for s, n in zip(slices, grid)
    )
    report.check(ok, f"{label}: crop_bounds gives one non-empty slice per dim",
                 f"{label}: crop_bounds returned {slices!r} for grid {grid}",
                 "return a tuple of one non-empty slice per dim, inside the grid")
