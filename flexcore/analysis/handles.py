"""fvcore op handles for every op flexcore's components trace to, and the ops counted as zero.

Conventions (see ``docs/analysis.md``):

* ``"mac"`` (default, fvcore's): one multiply-accumulate counts 1, as does any other
  arithmetic op on one element.
* ``"flop"`` (torch ``FlopCounterMode``'s): multiply-accumulate ops (convolution, linear,
  matmul, einsum, complex products, FFT butterflies) count 2 per multiply-add; plain
  elementwise ops and the normalisation estimates are unchanged.

An FFT of ``N`` complex points costs ``FFT_COMPLEX_FLOPS * N * log2(N)`` real operations
(5, FFTW's standard estimate: ``N/2 * log2 N`` radix-2 butterflies of one complex multiply
and two complex adds); a real-input or real-output transform costs half. An N-d transform
over sizes ``n_1..n_d`` is ``N = prod(n_i)`` points; ``"mac"`` halves these counts.
"""
from __future__ import annotations

import math
import string
import warnings
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

with warnings.catch_warnings():  # fvcore.nn uses torch.jit.script, deprecated in torch 2.14: not the user's concern
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*")
    from fvcore.nn.jit_handles import Handle, batchnorm_flop_jit, get_shape, norm_flop_counter

__all__ = [
    "CONVENTIONS",
    "FFT_COMPLEX_FLOPS",
    "ZERO_COST_OPS",
    "flop_handles",
    "activation_handles",
    "fft_cost",
]

CONVENTIONS = ("mac", "flop")

# Real operations per N*log2(N) of a complex FFT (FFTW's estimate); real transforms cost half.
FFT_COMPLEX_FLOPS = 5.0

# Ops deliberately counted as zero (fvcore's own ignore list covers shapes, copies,
# comparisons, relu, clamp and max; these extend it):
ZERO_COST_OPS = frozenset(
    {
        # The relative-position grid: input independent, built once and cached by the layer.
        "aten::linspace", "aten::meshgrid", "aten::logspace",
        # Padding, indexing, cropping, layout and copies move memory; they do no arithmetic.
        "aten::pad", "aten::reflection_pad1d", "aten::reflection_pad2d", "aten::reflection_pad3d",
        "aten::replication_pad1d", "aten::replication_pad2d", "aten::replication_pad3d",
        "aten::circular_pad1d", "aten::circular_pad2d", "aten::circular_pad3d",
        "aten::index_select", "aten::masked_select", "aten::take", "aten::take_along_dim",
        "aten::flip", "aten::repeat", "aten::tile", "aten::clone", "aten::expand_as",
        "aten::view_as", "aten::reshape_as", "aten::movedim", "aten::moveaxis", "aten::unflatten",
        "aten::repeat_interleave", "aten::diagonal", "aten::tril", "aten::triu", "aten::where",
        "aten::alias", "aten::lift_fresh", "aten::detach_", "aten::fill_", "aten::zero_",
        "aten::ones_like", "aten::empty_like", "aten::empty_strided", "aten::new_ones", "aten::eye",
        "aten::scalar_tensor", "aten::tensor", "aten::as_strided", "aten::unfold",
        "aten::pixel_shuffle", "aten::pixel_unshuffle", "aten::channel_shuffle",
        # Complex views: torch conjugates lazily (a sign bit folded into the next product).
        "aten::conj", "aten::_conj", "aten::resolve_conj", "aten::resolve_neg",
        "aten::view_as_real", "aten::view_as_complex", "aten::real", "aten::imag",
        # Integer, rounding, comparison and selection ops (as fvcore treats relu/clamp/max).
        "aten::lt", "aten::le", "aten::ne", "aten::logical_and", "aten::logical_or",
        "aten::logical_not", "aten::argmax", "aten::argmin", "aten::amax", "aten::amin",
        "aten::min", "aten::maximum", "aten::minimum", "aten::any", "aten::all",
        "aten::item", "aten::ceil", "aten::round", "aten::trunc", "aten::sign", "aten::sort",
        "aten::topk", "aten::clamp_min", "aten::clamp_max", "aten::clamp_min_", "aten::clamp_max_",
        "aten::hardtanh", "aten::hardtanh_", "aten::relu6", "aten::threshold",
        "aten::max_pool1d", "aten::max_pool2d", "aten::max_pool3d",
        "aten::adaptive_max_pool1d", "aten::adaptive_max_pool2d", "aten::adaptive_max_pool3d",
        "aten::max_pool1d_with_indices", "aten::max_pool2d_with_indices",
        # Random numbers and dropout masks (fvcore already ignores aten::dropout).
        "aten::feature_dropout", "aten::alpha_dropout", "aten::feature_alpha_dropout",
        "aten::dropout_", "aten::feature_dropout_", "aten::bernoulli", "aten::bernoulli_",
        "aten::rand", "aten::randn", "aten::rand_like", "aten::randn_like", "aten::randint",
        "aten::uniform_", "aten::normal_",
    }
)


def _ivalue(val: Any) -> Any:
    """Constant value of a traced argument; lists built by ``prim::ListConstruct`` included."""
    value = val.toIValue()
    if value is None and val.node().kind() == "prim::ListConstruct":
        return [_ivalue(item) for item in val.node().inputs()]
    return value


_INTEGER_TYPES = ("Long", "Int", "Short", "Char", "Byte", "Bool", "UInt16", "UInt32", "UInt64")


def _is_integer(val: Any) -> bool:
    """Integer arithmetic (counters such as BatchNorm's ``num_batches_tracked``) is no FLOP."""
    try:
        return val.isCompleteTensor() and str(val.type().scalarType()) in _INTEGER_TYPES
    except RuntimeError:
        return False


def _numel(val: Any) -> int:
    shape = get_shape(val)
    return int(np.prod(shape)) if shape is not None else 0


def _is_complex(val: Any) -> bool:
    try:
        return val.isCompleteTensor() and "Complex" in str(val.type().scalarType())
    except RuntimeError:
        return False


# ---------------------------------------------------------------- elementwise and reductions
def _elementwise(per_element: float = 1.0, complex_factor: float = 2.0) -> Handle:
    """``per_element`` per output element; complex outputs cost ``complex_factor`` times more."""

    def handle(inputs: List[Any], outputs: List[Any]) -> float:
        if _is_integer(outputs[0]):
            return 0.0
        scale = complex_factor if _is_complex(outputs[0]) else 1.0
        return per_element * scale * _numel(outputs[0])

    return handle


def _product(flops_per_mac: int) -> Handle:
    """Elementwise mul/div: a complex-by-complex product is 4 real multiplies and 2 adds."""

    def handle(inputs: List[Any], outputs: List[Any]) -> float:
        other = inputs[1]
        other_complex = _is_complex(other) if other.isCompleteTensor() else isinstance(_ivalue(other), complex)
        if _is_complex(inputs[0]) and other_complex:
            per = 4.0 if flops_per_mac == 1 else 6.0  # (ac-bd), (ad+bc): 2 MACs + 2 multiplies
        elif _is_complex(outputs[0]):
            per = 2.0  # real times complex: one multiply per component
        else:
            per = 0.0 if _is_integer(outputs[0]) else 1.0
        return per * _numel(outputs[0])

    return handle


def _reduction(per_input: float = 1.0, flops_per_mac: int = 1, mac: bool = False) -> Handle:
    """``per_input`` per element reduced (one add each); ``mac`` for fused square-accumulate."""

    def handle(inputs: List[Any], outputs: List[Any]) -> float:
        if _is_integer(inputs[0]):
            return 0.0
        scale = (2.0 if _is_complex(inputs[0]) else 1.0) * (flops_per_mac if mac else 1)
        return per_input * scale * _numel(inputs[0])

    return handle


def _avg_pool(inputs: List[Any], outputs: List[Any]) -> float:
    """One add per window element per output: ``numel(out) * prod(kernel)``."""
    kernel = _ivalue(inputs[1])
    dims = len(get_shape(outputs[0])) - 2 if len(get_shape(outputs[0])) > 2 else 1
    kernel = list(kernel) if isinstance(kernel, (list, tuple)) else [kernel]
    if len(kernel) == 1:
        kernel = kernel * dims
    return float(_numel(outputs[0]) * int(np.prod(kernel)))


def _adaptive_avg_pool(inputs: List[Any], outputs: List[Any]) -> float:
    """fvcore's rule for ``adaptive_avg_pool2d``: one add per input element."""
    return float(_numel(inputs[0]))


# ---------------------------------------------------------------- multiply-accumulate ops
def _complex_scale(values: Sequence[Any]) -> float:
    """A complex multiply-accumulate is 4 real ones; real-by-complex is 2."""
    n_complex = sum(_is_complex(v) for v in values)
    return {0: 1.0, 1: 2.0}.get(n_complex, 4.0)


def _matmul_like(first: int, flops_per_mac: int) -> Handle:
    """``numel(out) * k`` multiply-adds, ``k`` the contracted size (last dim of the first factor).

    Covers ``matmul``/``mm``/``bmm``/``linear`` (``first=0``) and ``addmm``/``baddbmm``
    (``first=1``), including 1-D and broadcast operands that fvcore's handles reject.
    """

    def handle(inputs: List[Any], outputs: List[Any]) -> float:
        a, b = inputs[first], inputs[first + 1]
        k = get_shape(a)[-1]
        return flops_per_mac * _complex_scale([a, b]) * _numel(outputs[0]) * k

    return handle


def _outer(flops_per_mac: int) -> Handle:
    def handle(inputs: List[Any], outputs: List[Any]) -> float:
        return flops_per_mac * _complex_scale(inputs[:2]) * _numel(outputs[0])

    return handle


def _conv(flops_per_mac: int) -> Handle:
    """``batch * prod(weight) * prod(output spatial)`` (fvcore's rule; bias ignored).

    Serves ``aten::_convolution`` and ``aten::_convolution_mode`` (``padding='same'``).
    """

    def handle(inputs: List[Any], outputs: List[Any]) -> Counter:
        x_shape, w_shape, out_shape = get_shape(inputs[0]), get_shape(inputs[1]), get_shape(outputs[0])
        transposed = len(inputs) >= 12 and bool(_ivalue(inputs[6]))
        spatial = (x_shape if transposed else out_shape)[2:]
        macs = x_shape[0] * int(np.prod(w_shape)) * int(np.prod(spatial))
        return Counter({"conv": flops_per_mac * _complex_scale(inputs[:2]) * macs})  # fvcore's name

    return handle


def _einsum_letters(equation: str, shapes: Sequence[Sequence[int]]) -> Dict[str, int]:
    """Size of every index letter (``...`` expanded to fresh letters, broadcasting)."""
    lhs = equation.split("->")[0].split(",")
    fresh = [c for c in string.ascii_letters if c not in equation]
    sizes: Dict[str, int] = {}
    for term, shape in zip(lhs, shapes):
        if "..." in term:
            n_ell = len(shape) - (len(term) - 3)
            term = term.replace("...", "".join(fresh[len(fresh) - n_ell:]) if n_ell else "")
        for letter, size in zip(term, shape):
            sizes[letter] = max(sizes.get(letter, 1), size)
    return sizes


def _einsum(flops_per_mac: int) -> Handle:
    """Multiply-adds of an einsum: the product of every index size for two operands.

    One operand: a reduction (one add per input element) or a free relabelling.
    Three or more: the cost of numpy's optimal contraction path.
    """

    def handle(inputs: List[Any], outputs: List[Any]) -> float:
        equation = _ivalue(inputs[0]).replace(" ", "")
        operands = list(inputs[1].node().inputs())
        shapes = [get_shape(v) for v in operands]
        scale = flops_per_mac * _complex_scale(operands)
        if "->" not in equation:  # implicit output: letters seen once, sorted
            lhs = equation.replace("...", "")
            out = "".join(sorted(c for c in set(lhs) if c.isalpha() and lhs.count(c) == 1))
            equation = f"{equation}->{'...' if '...' in equation else ''}{out}"
        if len(shapes) == 1:
            in_letters = set(equation.split("->")[0]) - {"."}
            reduces = in_letters - set(equation.split("->")[1])
            return float(_numel(operands[0])) * (2.0 if _is_complex(operands[0]) else 1.0) if reduces else 0.0
        if len(shapes) == 2:
            return scale * float(np.prod(list(_einsum_letters(equation, shapes).values())))
        arrays = [np.zeros(s) for s in shapes]
        report = np.einsum_path(equation, *arrays, optimize="optimal")[1]
        for line in report.split("\n"):
            if "optimized flop" in line.lower():
                return scale * float(line.split(":")[-1]) / 2.0  # numpy counts mul and add
        raise NotImplementedError(f"Cannot count einsum {equation!r}")

    return handle


# ---------------------------------------------------------------- FFTs
def fft_cost(points: int, batch: int, real: bool, flops_per_mac: int) -> float:
    """Cost of ``batch`` FFTs of ``points`` points: ``c * N * log2 N`` (see module docstring)."""
    if points <= 1:
        return 0.0
    c = FFT_COMPLEX_FLOPS / (2.0 if real else 1.0) / (2.0 / flops_per_mac)
    return c * batch * points * math.log2(points)


def _norm_dims(dims: Sequence[int], ndim: int) -> List[int]:
    return [d % ndim for d in dims]


def _fft(kind: str, style: str, flops_per_mac: int) -> Handle:
    """Handle for ``aten::fft_*``; ``kind`` in r2c / c2r / c2c, ``style`` in 1d / 2d / nd / raw.

    Sizes come from the real side of the transform (the input of r2c, the output of c2r)
    or the complex input of c2c; points per transform ``N`` are the product of the
    transformed sizes, the batch is everything else.
    """

    def handle(inputs: List[Any], outputs: List[Any]) -> float:
        # The real side of r2c is its input, of c2r its output; c2c sizes are the output's
        # (n/s pad or truncate before the transform).
        shape = list(get_shape(inputs[0] if kind == "r2c" else outputs[0]))
        ndim = len(shape)
        requested = None
        if style == "raw":  # aten::_fft_r2c(self, dim, normalization, ...)
            dims = _norm_dims(_ivalue(inputs[1]), ndim)
        elif style == "1d":  # fft_rfft(self, n, dim, norm)
            dims = [_ivalue(inputs[2]) % ndim]
            requested = _ivalue(inputs[1])
            requested = None if requested is None else [requested]
        else:  # fft_rfftn(self, s, dim, norm); fft_rfft2's dim defaults to (-2, -1)
            requested, dims = _ivalue(inputs[1]), _ivalue(inputs[2])
            if dims is None:
                if requested is not None:
                    dims = list(range(ndim - len(requested), ndim))
                else:
                    dims = [ndim - 2, ndim - 1] if style == "2d" else list(range(ndim))
            dims = _norm_dims(dims, ndim)
        if kind == "r2c" and requested is not None:
            for d, n in zip(dims, requested):
                if n is not None and n > 0:
                    shape[d] = n
        points = int(np.prod([shape[d] for d in dims]))
        batch = int(np.prod(shape)) // max(points, 1)
        real = kind != "c2c" or not _is_complex(inputs[0])
        return fft_cost(points, batch, real, flops_per_mac)

    return handle


def _fft_handles(flops_per_mac: int) -> Dict[str, Handle]:
    table = {
        "fft_rfft": ("r2c", "1d"), "fft_irfft": ("c2r", "1d"),
        "fft_ihfft": ("r2c", "1d"), "fft_hfft": ("c2r", "1d"),
        "fft_fft": ("c2c", "1d"), "fft_ifft": ("c2c", "1d"),
        "fft_rfft2": ("r2c", "2d"), "fft_irfft2": ("c2r", "2d"),
        "fft_fft2": ("c2c", "2d"), "fft_ifft2": ("c2c", "2d"),
        "fft_ihfft2": ("r2c", "2d"), "fft_hfft2": ("c2r", "2d"),
        "fft_rfftn": ("r2c", "nd"), "fft_irfftn": ("c2r", "nd"),
        "fft_fftn": ("c2c", "nd"), "fft_ifftn": ("c2c", "nd"),
        "fft_ihfftn": ("r2c", "nd"), "fft_hfftn": ("c2r", "nd"),
        "_fft_r2c": ("r2c", "raw"), "_fft_c2r": ("c2r", "raw"), "_fft_c2c": ("c2c", "raw"),
    }
    return {f"aten::{name}": _fft(kind, style, flops_per_mac) for name, (kind, style) in table.items()}


# ---------------------------------------------------------------- the tables
_UNARY = (
    "sin", "cos", "tan", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt",
    "rsqrt", "reciprocal", "abs", "neg", "square", "sigmoid", "tanh", "erf", "erfc",
    "gelu", "silu", "mish", "elu", "selu", "celu", "softplus", "leaky_relu", "hardswish",
    "hardsigmoid", "logsigmoid", "sinh", "cosh", "asin", "acos", "atan", "sinc", "frac",
    "prelu", "rrelu", "glu",
)
_BINARY = ("add", "sub", "rsub", "pow", "atan2", "remainder_", "fmod", "hypot", "xlogy")


def flop_handles(convention: str = "mac") -> Dict[str, Handle]:
    """Every op handle flexcore adds to (or replaces in) fvcore's ``FlopCountAnalysis``.

    Args:
        convention: ``"mac"`` (a multiply-add is 1, fvcore) or ``"flop"`` (it is 2, torch).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"Unknown FLOP convention {convention!r}; use one of {CONVENTIONS}.")
    fpm = 1 if convention == "mac" else 2
    handles: Dict[str, Handle] = {
        "aten::_convolution": _conv(fpm),
        "aten::_convolution_mode": _conv(fpm),
        "aten::linear": _matmul_like(0, fpm),
        "aten::matmul": _matmul_like(0, fpm),
        "aten::mm": _matmul_like(0, fpm),
        "aten::bmm": _matmul_like(0, fpm),
        "aten::mv": _matmul_like(0, fpm),
        "aten::dot": _matmul_like(0, fpm),
        "aten::vdot": _matmul_like(0, fpm),
        "aten::addmm": _matmul_like(1, fpm),
        "aten::baddbmm": _matmul_like(1, fpm),
        "aten::addbmm": _matmul_like(1, fpm),
        # flexcore's FFT channel mix: a batched complex matmul with a hand-written backward.
        "prim::PythonOp._ComplexMix": _matmul_like(0, fpm),
        "aten::outer": _outer(fpm),
        "aten::einsum": _einsum(fpm),
        # Norm estimates as in fvcore (5 per element with affine, batch norm in eval 1-2).
        "aten::batch_norm": batchnorm_flop_jit,
        "aten::group_norm": norm_flop_counter(2),
        "aten::layer_norm": norm_flop_counter(2),
        "aten::instance_norm": norm_flop_counter(1),
        "aten::rms_norm": norm_flop_counter(2),
        "aten::softmax": _elementwise(3.0),  # exp, sum, divide
        "aten::log_softmax": _elementwise(3.0),  # exp, sum, subtract (one log per row)
        "aten::logsumexp": _reduction(2.0),
        "aten::mul": _product(fpm),
        "aten::mul_": _product(fpm),
        "aten::div": _product(fpm),
        "aten::div_": _product(fpm),
        "aten::true_divide": _product(fpm),
        "aten::addcmul": _elementwise(2.0),
        "aten::addcdiv": _elementwise(2.0),
        "aten::lerp": _elementwise(2.0),
        "aten::sum": _reduction(1.0),
        "aten::mean": _reduction(1.0),
        "aten::cumsum": _reduction(1.0),
        "aten::cumprod": _reduction(1.0),
        "aten::prod": _reduction(1.0),
        "aten::var": _reduction(2.0),
        "aten::std": _reduction(2.0),
        "aten::var_mean": _reduction(2.0),
        "aten::std_mean": _reduction(2.0),
        "aten::norm": _reduction(1.0, fpm, mac=True),
        "aten::linalg_vector_norm": _reduction(1.0, fpm, mac=True),
        "aten::frobenius_norm": _reduction(1.0, fpm, mac=True),
        "aten::avg_pool1d": _avg_pool,
        "aten::avg_pool2d": _avg_pool,
        "aten::avg_pool3d": _avg_pool,
        "aten::adaptive_avg_pool1d": _adaptive_avg_pool,
        "aten::adaptive_avg_pool2d": _adaptive_avg_pool,
        "aten::adaptive_avg_pool3d": _adaptive_avg_pool,
        "aten::upsample_nearest1d": _elementwise(1.0),
        "aten::upsample_nearest2d": _elementwise(1.0),
        "aten::upsample_nearest3d": _elementwise(1.0),
        "aten::upsample_linear1d": _elementwise(2.0),
        "aten::upsample_bilinear2d": _elementwise(4.0),
        "aten::upsample_bicubic2d": _elementwise(16.0),
        "aten::upsample_trilinear3d": _elementwise(8.0),
        "aten::grid_sampler": _elementwise(4.0),
    }
    for name in _UNARY:
        handles[f"aten::{name}"] = _elementwise(1.0)
        handles[f"aten::{name}_"] = _elementwise(1.0)
    for name in _BINARY:
        handles.setdefault(f"aten::{name}", _elementwise(1.0))
        handles.setdefault(f"aten::{name}_", _elementwise(1.0))
    handles.update(_fft_handles(fpm))
    return handles


def _output_size(inputs: List[Any], outputs: List[Any]) -> float:
    return float(_numel(outputs[0]) * (2 if _is_complex(outputs[0]) else 1))


def activation_handles() -> Dict[str, Handle]:
    """fvcore's activation definition (outputs of conv, linear, matmul, einsum) plus the
    inverse FFTs that end an FFT convolution; complex outputs count two reals."""
    names = [
        "aten::_convolution", "aten::_convolution_mode", "aten::addmm", "aten::bmm",
        "aten::einsum", "aten::matmul", "aten::linear", "aten::mm", "aten::baddbmm",
        "aten::fft_irfft", "aten::fft_irfft2", "aten::fft_irfftn", "aten::_fft_c2r",
    ]
    return {name: _output_size for name in names}

