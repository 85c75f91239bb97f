"""Count host reads of device values (device-to-host synchronisations), testable on the CPU.

On a GPU every ``.item()``, ``float(t)``, ``.tolist()``, ``.cpu()`` or ``if t:`` of a tensor
on the device waits for the queued kernels to finish. ``torch.cuda.set_sync_debug_mode``
flags them, but only on a GPU. :class:`count_host_reads` finds the same reads on any device:
it marks the given modules' parameters and buffers and the given inputs as "on the device",
follows the marks through every torch operation (results of an op on a marked tensor are
marked; ``.cpu()`` / ``.to('cpu')`` results are host copies, not marked) and records each
host read of a marked tensor, with the line that made it. Reads of host copies (a crop
computed from bounds fetched once) cost nothing and are not counted.

    with count_host_reads(model, x) as reads:
        model(x)
    assert reads.count <= 1, reads.report()

Python-level reads only: C++ code that syncs (e.g. ``torch.nonzero`` on CUDA) is not seen;
on a GPU confirm with the profiler (docs/training.md, "Host-device synchronisation").
"""
from __future__ import annotations

import traceback
from typing import Any, List, Tuple

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

__all__ = ["count_host_reads", "HOST_READS"]

# Tensor methods that copy values to the host (a sync on an accelerator).
HOST_READS = {
    torch.Tensor.item: "item",
    torch.Tensor.tolist: "tolist",
    torch.Tensor.cpu: "cpu",
    torch.Tensor.numpy: "numpy",
    torch.Tensor.__float__: "float",
    torch.Tensor.__int__: "int",
    torch.Tensor.__bool__: "bool",
    torch.Tensor.__index__: "index",
}
_MARK = "_flexcore_on_device"


def _to_host(func, args, kwargs) -> bool:
    """``t.to(...)`` / ``t.to(device=...)`` whose target is the CPU."""
    if func is not torch.Tensor.to:
        return False
    for target in list(args[1:2]) + [kwargs.get("device")]:
        if isinstance(target, (str, torch.device)) and torch.device(target).type == "cpu":
            return True
    return False


def _marked(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and getattr(t, _MARK, False)


class count_host_reads(TorchFunctionMode):
    """Context manager recording each host read of a device value made inside it.

    Args:
        roots: modules (their parameters and buffers) and tensors to treat as living on
            the device. Without roots every host read of any tensor counts.

    Attributes:
        reads: ``(kind, where)`` per read; ``where`` is the innermost flexcore frame.
    """

    def __init__(self, *roots: Any) -> None:
        super().__init__()
        self.reads: List[Tuple[str, str]] = []
        self._track = bool(roots)
        self._roots: List[torch.Tensor] = []
        for root in roots:
            if isinstance(root, nn.Module):
                self._roots += list(root.parameters()) + list(root.buffers())
            elif isinstance(root, torch.Tensor):
                self._roots.append(root)
            else:
                raise TypeError(f"count_host_reads: roots must be modules or tensors, got {type(root).__name__}")

    def __enter__(self):
        for t in self._roots:
            setattr(t, _MARK, True)
        return super().__enter__()

    def __exit__(self, *exc):
        for t in self._roots:
            if hasattr(t, _MARK):
                delattr(t, _MARK)
        return super().__exit__(*exc)

    @property
    def count(self) -> int:
        return len(self.reads)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = HOST_READS.get(func) or ("to(cpu)" if _to_host(func, args, kwargs) else None)
        flat, _ = tree_flatten((args, kwargs))
        on_device = any(_marked(t) for t in flat) if self._track else True
        if kind is not None and on_device:
            self.reads.append((kind, self._caller()))
        out = func(*args, **kwargs)
        if kind is not None and isinstance(out, torch.Tensor) and out is args[0]:
            out = out.view_as(out)  # .cpu() of a CPU tensor returns itself; a GPU one returns a host copy
        if self._track and on_device and kind is None:
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    try:
                        setattr(t, _MARK, True)
                    except (AttributeError, RuntimeError):  # some C++-owned results refuse attributes
                        pass
        return out

    @staticmethod
    def _caller() -> str:
        stack = traceback.extract_stack()[:-2]
        frames = [f for f in stack if "flexcore" in f.filename and "host_sync" not in f.filename]
        frame = frames[-1] if frames else stack[-1]
        return f"{frame.filename}:{frame.lineno} ({frame.name})"

    def report(self) -> str:
        return f"{self.count} host reads:\n" + "\n".join(f"  {kind} at {where}" for kind, where in self.reads)
