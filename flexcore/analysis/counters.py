"""fvcore's FLOP and activation analyses with flexcore's op handles, sharing one trace.

    flops = FlexcoreFlopCountAnalysis(model, (x,))
    acts = FlexcoreActivationCountAnalysis(model, (x,)).share_trace(flops)   # traced once
"""
from __future__ import annotations

import contextlib
import gc
import warnings
from collections import Counter
from numbers import Number
from typing import Dict, List, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from torch.jit import TracerWarning

with warnings.catch_warnings():  # fvcore.nn uses torch.jit.script, deprecated in torch 2.14: not the user's concern
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*")
    from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis
    from fvcore.nn.jit_analysis import Statistics, _get_scoped_trace_graph, _named_modules_with_dup

from .handles import ZERO_COST_OPS, activation_handles, flop_handles

__all__ = [
    "FlexcoreFlopCountAnalysis",
    "FlexcoreActivationCountAnalysis",
    "UncountedOpsError",
    "assert_all_ops_counted",
]

Inputs = Union[torch.Tensor, Tuple[torch.Tensor, ...]]


class UncountedOpsError(RuntimeError):
    """An op had no FLOP handle, so a count would silently miss its cost."""


@contextlib.contextmanager
def _gc_paused():
    """Tracing creates many short-lived Python objects; collections over the heap of a large
    model then cost a quarter of the trace. Nothing traced relies on a collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _SharedTrace:
    """Mixin for fvcore's analyses: keep the trace graph and let another analysis of the same
    model and inputs reuse it, so FLOPs and activations cost one trace, not two.

    Counts exactly as fvcore's ``JitModelAnalysis._analyze`` (same handles, ignored ops,
    ancestor modes and warnings); only the trace is cached.
    """

    _graph = None

    def share_trace(self, other: "_SharedTrace"):
        """Reuse ``other``'s trace; it must analyse the same model on the same inputs."""
        if other._model is not self._model or other._inputs is not self._inputs:
            raise ValueError("share_trace: the analyses trace different models or inputs")
        self._graph = other.trace_graph()
        return self

    def trace_graph(self) -> torch._C.Graph:
        """The scoped trace of the model (traced on first use)."""
        if self._graph is None:
            with warnings.catch_warnings(), _gc_paused():
                if self._warn_trace == "none":
                    warnings.simplefilter("ignore")
                elif self._warn_trace == "no_tracer_warning":
                    warnings.filterwarnings("ignore", category=TracerWarning)
                self._graph = _get_scoped_trace_graph(self._model, self._inputs, self._aliases)
        return self._graph

    def _analyze(self) -> Statistics:
        if self._stats is not None:
            return self._stats
        counts: Dict[str, Counter] = {}
        unsupported: Dict[str, Counter] = {}
        for _, module in _named_modules_with_dup(self._model):
            counts[self._aliases[module]] = Counter()
            unsupported[self._aliases[module]] = Counter()
        seen, owners_of = set(), {}
        for node in self.trace_graph().nodes():
            kind = node.kind()
            if kind == "prim::PythonOp":  # an autograd.Function: named by its Python class
                kind = f"{kind}.{node.pyname()}"
            scope = node.scopeName()
            owners = owners_of.get(scope)
            if owners is None:
                scopes = scope.split("/")
                seen.update(scopes)
                owners = set(scopes) if self._ancestor_mode == "caller" else self._get_all_ancestors(scopes[-1])
                seen.update(owners)
                owners_of[scope] = owners
            handle = self._op_handles.get(kind)
            if handle is None:
                if not self._should_ignore_node(node):
                    for name in owners:
                        unsupported[name][kind] += 1
                continue
            op_counts = handle(list(node.inputs()), list(node.outputs()))
            if isinstance(op_counts, Number):
                op_counts = Counter({self._simplify_op_name(kind): op_counts})
            for value in op_counts.values():
                if not isinstance(value, (int, float, np.integer, np.floating)):
                    raise ValueError(f"{kind}: handle returned a count of type {type(value)}; use int or float")
            for name in owners:
                counts[name] += op_counts
        self._stats = Statistics(counts=counts, unsupported_ops=unsupported,
                                 uncalled_mods=set(self._aliases.values()) - seen)
        self._warn_unsupported_ops(unsupported[""])
        self._warn_uncalled_mods(self._stats.uncalled_mods)
        return self._stats


class FlexcoreFlopCountAnalysis(_SharedTrace, FlopCountAnalysis):
    """fvcore's ``FlopCountAnalysis`` with handles for every op flexcore's components use.

    Adds FFTs, complex products, elementwise math (sin, exp, sigmoid, ...), reductions,
    pooling and robust matmul/einsum handles; grid construction, padding, indexing and
    complex views count zero on purpose (``handles.ZERO_COST_OPS``).

    Args:
        model: the module to trace.
        inputs: its forward inputs, e.g. ``(x,)`` with ``x`` of shape ``(B, C, *spatial)``.
        convention: ``"mac"`` (fvcore: a multiply-add counts 1) or ``"flop"`` (it counts 2,
            as torch's ``FlopCounterMode``).
    """

    def __init__(self, model: nn.Module, inputs: Inputs, convention: str = "mac"):
        super().__init__(model, inputs)
        self.convention = convention
        self.set_op_handle(**flop_handles(convention))
        self.set_op_handle(**{op: None for op in ZERO_COST_OPS})


class FlexcoreActivationCountAnalysis(_SharedTrace, ActivationCountAnalysis):
    """Activations (output elements) of convolutions, linears, matmuls, einsums and inverse FFTs.

    That is fvcore's definition; every other op is by definition not counted, so its
    unsupported-op warnings are off.
    """

    def __init__(self, model: nn.Module, inputs: Inputs):
        super().__init__(model, inputs)
        self.set_op_handle(**activation_handles())
        self.unsupported_ops_warnings(False)


def assert_all_ops_counted(analysis: FlopCountAnalysis, what: str = "model") -> None:
    """Raise :class:`UncountedOpsError` if any traced op had no handle.

    Args:
        analysis: a FLOP analysis (traced on first use).
        what: name of the analysed thing, for the message.
    """
    analysis.total()
    missing = analysis.unsupported_ops()
    if missing:
        where = _modules_with_uncounted_ops(analysis)
        ops = ", ".join(f"{op} (x{n})" for op, n in sorted(missing.items()))
        raise UncountedOpsError(
            f"FLOPs of {what} are incomplete: no handle for {ops}; seen in modules: "
            f"{', '.join(where) or '<root>'}. Add a handle in flexcore/analysis/handles.py "
            "(flop_handles), or list the op in ZERO_COST_OPS if it does no arithmetic."
        )


def _modules_with_uncounted_ops(analysis: FlopCountAnalysis) -> List[str]:
    stats = analysis._analyze()  # noqa: SLF001 - fvcore exposes per-module ops only this way
    leaves = [name for name, ops in stats.unsupported_ops.items() if ops and name]
    return sorted(n for n in leaves if not any(o != n and o.startswith(n + ".") for o in leaves))
