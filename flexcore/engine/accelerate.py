"""Optional training accelerators: ``torch.compile``, channels-last memory, mixed precision.

Each is a ``Runtime`` setting (``Runtime.compile``, ``Runtime.channels_last``,
``Runtime.amp``); measure what they bring on your hardware with
``tools/benchmark.py accelerators``. See docs/training.md, "Accelerators".
"""
from __future__ import annotations

import contextlib
import logging
from typing import ContextManager, Optional

import torch
import torch.nn as nn

__all__ = ["AMP_DTYPES", "amp_dtype", "autocast", "to_channels_last", "compile_model", "is_compile_error",
           "disable_compile"]

logger = logging.getLogger("flexcore")

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: Optional[str], device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of ``Runtime.amp`` (None: full precision), checked against the device."""
    if amp in (None, "", "none", "fp32"):
        return None
    if amp not in AMP_DTYPES:
        raise ValueError(f"Runtime.amp must be None, 'bf16' or 'fp16', got {amp!r}")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("Runtime.amp = 'bf16': this GPU has no bfloat16 support; use Runtime.amp = 'fp16'.")
    return AMP_DTYPES[amp]


def autocast(device: torch.device, dtype: Optional[torch.dtype]) -> ContextManager:
    """``torch.autocast`` for the device, or a no-op for full precision.

    Inside it convolutions and matmuls run in ``dtype``; flexcore's FFT convolutions upcast
    to float32 (``flexcore.layers.functional.conv_fft``), since FFTs of half-precision
    signals lose most of their accuracy.
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convert the 4-D parameters and buffers of ``model`` to channels-last memory (in place).

    Only 2-D image models have 4-D weights; for 1-D (sequence) models it changes nothing
    and a warning says so.
    """
    if not any(p.dim() == 4 for p in model.parameters()) and not any(
        isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) for m in model.modules()
    ):
        logger.warning("Runtime.channels_last: %s has no 2-D (4-D tensor) layers; the option changes nothing.",
                       type(model).__name__)
    return model.to(memory_format=torch.channels_last)


def compile_model(model: nn.Module, mode: Optional[str] = None, backend: str = "inductor",
                  dynamic: Optional[bool] = None) -> nn.Module:
    """``torch.compile`` the model in place (``nn.Module.compile``: state-dict keys unchanged).

    Compilation happens lazily, on the first forward; the trainer catches a failure there
    (see :func:`is_compile_error`) and falls back to eager execution.
    """
    if not hasattr(torch, "compile"):
        raise RuntimeError("Runtime.compile = True needs torch >= 2.0 (torch.compile)")
    model.compile(mode=mode, backend=backend, dynamic=dynamic)
    logger.info("torch.compile(%s, mode=%s, backend=%s): compiles on the first step (can take minutes on CPU)",
                type(model).__name__, mode, backend)
    return model


def is_compile_error(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by torch.compile's machinery (dynamo, AOT autograd, inductor)."""
    for e in (exc, exc.__cause__, exc.__context__):
        if e is None:
            continue
        module = type(e).__module__ or ""
        if module.startswith(("torch._dynamo", "torch._inductor", "torch._functorch", "torch.fx")):
            return True
    return False


def disable_compile(model: nn.Module) -> None:
    """Undo :func:`compile_model`: the module runs eagerly again."""
    model._compiled_call_impl = None
