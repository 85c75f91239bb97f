"""Convert state dicts of the original FlexConv code (rjbruin/flexconv) to flexcore's names.

Small composable functions: each converts one component found under a key prefix of the
original state dict and returns flexcore entries under a new prefix, so conv-layer and
whole-model converters are a few calls to them.

Kernel nets (the original's ``<conv>.Kernel.*``; 1x1 conv weights ``[out, in, 1(, 1)]``
become ``[out, in]`` matrices, ``weight_g`` ``[out, 1, 1(, 1)]`` becomes ``[out, 1]``; every
other tensor is copied unchanged):

============================================  =========================================
original (after the ``Kernel.`` prefix)       flexcore kernel net
============================================  =========================================
MAGNet / Gabor / Fourier (``MFNBase``)
``linear.{i}.{weight,bias}``                  ``linear.{i}.{weight,bias}``  (i < L)
``output_linear.{weight,bias}``               ``output_linear.{weight,bias}``
``filters.{l}.linear.{weight,bias}``          ``filters.{l}.linear.{weight,bias}``  (l <= L)
``filters.{l}.{mu,gamma,theta}``              ``filters.{l}.{mu,gamma,theta}``
SIREN / nSIREN (``kernel_net`` Sequential: sine layer, Sine, ..., output linear)
``kernel_net.{2k}.{weight,bias,omega_0}``     ``hidden.{k}.{weight,bias,omega_0}``  (k < L-1)
``kernel_net.{2(L-1)}.{weight,bias}``         ``output_linear.{weight,bias}``
MLP (``kernel_net`` Sequential: Linear, Norm, Act, ..., output linear)
``kernel_net.{3k}.{weight,bias}``             ``hidden.{k}.{weight,bias}``  (k < L-1)
``kernel_net.{3k+1}.*`` (BatchNorm)           ``norms.{k}.*``
``kernel_net.{3k+1}.layer_norm.{weight,bias}``  ``norms.{k}.{weight,bias}`` (LayerNorm)
``kernel_net.{3(L-1)}.{weight,bias}``         ``output_linear.{weight,bias}``
============================================  =========================================

With weight norm, ``weight`` is ``weight_g`` + ``weight_v`` on both sides.

Convolution layers (the original's CKConv/FlexConv under a prefix such as ``blocks.0.cconv1.``):

============================================  =========================================
original                                      flexcore CKConv / FlexConv
============================================  =========================================
``bias`` [Cout]                               ``bias``
``train_length`` int32 [1]                    ``train_length`` int32 [D] (same value per dim)
``mask_params`` [D, 2], rows (mean, sigma)    ``mask.mean`` [D], ``mask.sigma`` [D]
``mask_threshold`` [1]                        ``mask.threshold`` [1]
``temperature`` [1]                           ``mask.temperature`` [1]
``Kernel.*``                                  ``kernel_net.*`` (table above)
============================================  =========================================
"""
from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn

__all__ = [
    "OriginalCheckpointError",
    "KERNEL_FAMILIES",
    "canonical_kernel_family",
    "pointwise_to_matrix",
    "convert_kernel_net",
    "load_original_kernel_net",
    "ckconv_kwargs_from_config",
    "kernel_net_config",
    "convert_conv",
    "load_original_conv",
    "conv_from_original",
    "convert_original_model",
    "strip_module_prefix",
]

# Original `kernel.type` names (and flexcore class names) -> converter family.
KERNEL_FAMILIES = {
    "magnet": "mfn",
    "gabor": "mfn",
    "gabornet": "mfn",
    "fourier": "mfn",
    "fouriernet": "mfn",
    "siren": "siren",
    "nsiren": "siren",
    "mlp": "mlp",
}


class OriginalCheckpointError(ValueError):
    """An original state dict does not have the layout its converter expects."""


def canonical_kernel_family(family: str) -> str:
    """``"mfn"``, ``"siren"`` or ``"mlp"`` for an original ``kernel.type`` or flexcore name."""
    key = str(family).lower()
    if key not in KERNEL_FAMILIES:
        raise OriginalCheckpointError(
            f"Unknown kernel family {family!r}; the original's kernel types are "
            "MAGNet, Gabor, Fourier, SIREN, nSIREN and MLP."
        )
    return KERNEL_FAMILIES[key]


def pointwise_to_matrix(tensor: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv weight ``[out, in, 1, ...]`` as the matrix ``[out, in]`` (others unchanged)."""
    if tensor.dim() > 2 and all(s == 1 for s in tensor.shape[2:]):
        return tensor.reshape(tensor.shape[0], tensor.shape[1])
    return tensor


def _sequential_rename(index: int, stride: int, last: int, rest: str, prefix_norm: bool) -> Optional[str]:
    """Map ``kernel_net.{index}.{rest}`` of an MLP/SIREN Sequential to flexcore names."""
    layer, offset = divmod(index, stride)
    if offset == 0:
        return f"output_linear.{rest}" if layer == last else f"hidden.{layer}.{rest}"
    if prefix_norm and offset == 1:
        return f"norms.{layer}.{rest.replace('layer_norm.', '', 1)}"
    return None


def convert_kernel_net(
    original_sd: Mapping[str, torch.Tensor],
    prefix: str,
    family: str,
    new_prefix: str = "",
) -> Dict[str, torch.Tensor]:
    """Convert the entries of one original kernel net to a flexcore kernel net's state dict.

    Args:
        original_sd: an original state dict (a whole model's is fine).
        prefix: the kernel net's key prefix in it, e.g. ``"Kernel."`` or
            ``"blocks.0.cconv1.Kernel."``.
        family: the original's ``kernel.type`` (``MAGNet``, ``Gabor``, ``Fourier``, ``SIREN``,
            ``nSIREN``, ``MLP``) or the flexcore class name.
        new_prefix: prepended to every returned key (e.g. ``"blocks.0.cconv1.kernel_net."``).

    Returns:
        ``{new_prefix + flexcore key: tensor}``.
    """
    kind = canonical_kernel_family(family)
    entries = {k[len(prefix):]: v for k, v in original_sd.items() if k.startswith(prefix)}
    if not entries:
        raise OriginalCheckpointError(
            f"No entries under prefix {prefix!r} in the original state dict "
            f"(first keys: {list(original_sd)[:5]})."
        )
    out: Dict[str, torch.Tensor] = {}
    if kind == "mfn":
        for key, value in entries.items():
            if not re.match(r"(linear\.\d+|output_linear|filters\.\d+\.(linear|mu|gamma|theta))", key):
                raise OriginalCheckpointError(f"Unexpected key {prefix + key!r} for a {family} kernel net.")
            out[new_prefix + key] = pointwise_to_matrix(value)
        return out

    stride = 2 if kind == "siren" else 3
    indices = sorted({int(k.split(".")[1]) for k in entries if re.match(r"kernel_net\.\d+\.", k)})
    if not indices or len(entries) != sum(1 for k in entries if k.startswith("kernel_net.")):
        raise OriginalCheckpointError(
            f"A {family} kernel net's keys are `{prefix}kernel_net.<i>.*`; got {sorted(entries)[:6]}."
        )
    last = indices[-1] // stride
    for key, value in entries.items():
        _, index, rest = key.split(".", 2)
        new_key = _sequential_rename(int(index), stride, last, rest, prefix_norm=kind == "mlp")
        if new_key is None:
            raise OriginalCheckpointError(f"Unexpected key {prefix + key!r} for a {family} kernel net.")
        out[new_prefix + new_key] = pointwise_to_matrix(value)
    return out


def load_original_kernel_net(
    net: nn.Module, original_sd: Mapping[str, torch.Tensor], prefix: str = "Kernel.", family: Optional[str] = None
) -> nn.Module:
    """Load an original kernel net's weights into ``net`` (strict), with a clear error on mismatch.

    Args:
        net: a flexcore kernel net built with the same hyper-parameters.
        original_sd: the original state dict.
        prefix: the kernel net's prefix in it.
        family: the original's kernel type; default: ``net``'s class name.
    """
    family = family or type(net).__name__
    converted = convert_kernel_net(original_sd, prefix, family)
    return load_converted_strict(
        net, converted,
        f"The original {family} kernel net under {prefix!r} does not fit {type(net).__name__} ({net.extra_repr()})",
        "Build the net with the original's hyper-parameters (hidden_channels, num_layers, "
        "out_channels = C_out*C_in, norm, weight_norm, steerable).",
    )


def load_converted_strict(module: nn.Module, converted: Mapping[str, torch.Tensor], what: str, fix: str) -> nn.Module:
    """``module.load_state_dict(converted)``, or an ``OriginalCheckpointError`` saying ``what`` and ``fix``
    above the listing of missing, unexpected and mis-shaped keys (checkpoint shape -> model shape)."""
    from flexcore.checkpoint.checkpointer import state_dict_differences

    differences = state_dict_differences(converted, module.state_dict())
    if differences:
        raise OriginalCheckpointError(f"{what}:\n{differences.report()}\n{fix}")
    module.load_state_dict(converted)
    return module


# Original kernel.type -> flexcore KERNEL_NETS name.
_KERNEL_NAMES = {"MLP": "MLP", "SIREN": "SIREN", "nSIREN": "nSIREN", "Fourier": "FourierNet",
                 "Gabor": "GaborNet", "MAGNet": "MAGNet"}


def ckconv_kwargs_from_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The original's resolved Hydra config (groups ``kernel``, ``conv``, ``mask``) as the
    ``kernel_*`` / ``conv_*`` / ``mask_*`` keyword arguments its models pass to CKConv/FlexConv."""
    kwargs: Dict[str, Any] = {}
    for group in ("kernel", "conv", "mask"):
        for key, value in config.get(group, {}).items():
            if not isinstance(value, Mapping):  # kernel.regularize_params, kernel.srf
                kwargs[f"{group}_{key}"] = value
    return kwargs


def kernel_net_config(ckconv_kwargs: Mapping[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """flexcore kernel-net name and hyper-parameters equivalent to an original CKConv/FlexConv.

    Reproduces what the original constructor forwards: MLP ignores ``bias_init``; Fourier gets
    no ``input_scale`` (its default 256 is used); FlexConv (``mask_init_value`` given) replaces
    ``init_spatial_value`` by ``1.667 * mask_init_value`` for a Gaussian mask; values > 1 clamp to 1.

    Args:
        ckconv_kwargs: ``kernel_type``, ``kernel_no_hidden``, ``kernel_no_layers``, ``conv_bias``,
            ... as in the original CKConv/FlexConv signature (missing keys take its defaults).

    Returns:
        ``(name, hp)``: build with ``KERNEL_NETS.build(name, dim, C_out * C_in, **hp)`` where
        ``dim = ckconv_kwargs["kernel_dim_linear"]``.
    """
    kw = {
        "kernel_type": "MAGNet", "kernel_no_hidden": 32, "kernel_no_layers": 3,
        "kernel_activ_function": "ReLU", "kernel_norm": "BatchNorm", "kernel_omega_0": 0.0,
        "kernel_learn_omega_0": False, "kernel_weight_norm": False, "kernel_steerable": False,
        "kernel_init_spatial_value": 1.0, "kernel_bias_init": None, "kernel_input_scale": 25.6,
        "conv_bias": True, **ckconv_kwargs,
    }
    kernel_type = kw["kernel_type"]
    if kernel_type not in _KERNEL_NAMES:
        raise OriginalCheckpointError(f"Unknown original kernel type {kernel_type!r}; known: {list(_KERNEL_NAMES)}.")
    spatial = kw["kernel_init_spatial_value"]
    if "mask_init_value" in ckconv_kwargs and kw.get("mask_type", "gaussian") == "gaussian":
        spatial = kw["mask_init_value"] * 1.667  # FlexConv's override, same float expression
    spatial = min(spatial, 1.0)
    hp: Dict[str, Any] = {
        "hidden_channels": kw["kernel_no_hidden"], "num_layers": kw["kernel_no_layers"], "bias": kw["conv_bias"],
    }
    if kernel_type == "MLP":
        hp.update(activation=kw["kernel_activ_function"], norm=kw["kernel_norm"] or None,
                  weight_norm=kw["kernel_weight_norm"])
    elif kernel_type in ("SIREN", "nSIREN"):
        hp.update(omega_0=kw["kernel_omega_0"], learn_omega_0=kw["kernel_learn_omega_0"],
                  bias_init=kw["kernel_bias_init"], weight_norm=kw["kernel_weight_norm"])
    elif kernel_type == "Fourier":
        hp.update(bias_init=kw["kernel_bias_init"])
    else:
        hp.update(bias_init=kw["kernel_bias_init"], input_scale=kw["kernel_input_scale"], init_spatial_value=spatial)
        if kernel_type == "MAGNet":
            hp["steerable"] = kw["kernel_steerable"]
    return _KERNEL_NAMES[kernel_type], hp


# -- convolution layers -------------------------------------------------------------------
_CONV_KEYS = {"bias": "bias", "mask_threshold": "mask.threshold", "temperature": "mask.temperature"}


def convert_conv(
    original_sd: Mapping[str, torch.Tensor],
    prefix: str,
    kernel_family: str,
    dim: int,
    new_prefix: str = "",
) -> Dict[str, torch.Tensor]:
    """Convert one original CKConv/FlexConv (keys under ``prefix``) to flexcore's names.

    Args:
        original_sd: an original state dict (a whole model's is fine).
        prefix: the layer's key prefix, e.g. ``""`` or ``"blocks.0.cconv1."``.
        kernel_family: the original's ``kernel.type`` (MAGNet, Gabor, Fourier, SIREN, nSIREN, MLP).
        dim: spatial dims of the layer (``train_length`` becomes one entry per dim).
        new_prefix: prepended to every returned key.
    """
    out = convert_kernel_net(original_sd, prefix + "Kernel.", kernel_family, new_prefix + "kernel_net.")
    for key, value in original_sd.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name.startswith("Kernel.") or "." in name:
            continue
        if name in _CONV_KEYS:
            out[new_prefix + _CONV_KEYS[name]] = value
        elif name == "train_length":
            out[new_prefix + "train_length"] = value.reshape(-1)[:1].to(torch.int32).repeat(dim)
        elif name == "mask_params":
            if tuple(value.shape) != (dim, 2):
                raise OriginalCheckpointError(
                    f"{prefix}mask_params has shape {tuple(value.shape)}; a {dim}-D FlexConv has ({dim}, 2)."
                )
            out[new_prefix + "mask.mean"] = value[:, 0].clone()
            out[new_prefix + "mask.sigma"] = value[:, 1].clone()
        elif name != "conv_kernel":  # non-persistent in the original; skip if a user saved it
            raise OriginalCheckpointError(f"Unexpected key {key!r} for an original CKConv/FlexConv.")
    return out


def load_original_conv(
    layer: nn.Module, original_sd: Mapping[str, torch.Tensor], prefix: str = "", family: Optional[str] = None
) -> nn.Module:
    """Load an original CKConv/FlexConv's weights into a flexcore ``layer`` (strict).

    Args:
        layer: a flexcore CKConv/FlexConv built with the original's hyper-parameters
            (:func:`conv_from_original` builds one).
        original_sd: the original state dict.
        prefix: the layer's prefix in it.
        family: the original's kernel type; default: the class name of ``layer.kernel_net``.
    """
    family = family or type(layer.kernel_net).__name__
    converted = convert_conv(original_sd, prefix, family, layer.dim)
    return load_converted_strict(
        layer, converted, f"The original conv under {prefix!r} does not fit {type(layer).__name__}",
        "Build the layer with the original's hyper-parameters (conv_from_original does).",
    )


def conv_from_original(original_class: str, ckconv_kwargs: Mapping[str, Any], fft: Any = "auto") -> nn.Module:
    """The flexcore layer equivalent to an original ``CKConv``/``FlexConv(**ckconv_kwargs)``.

    Seed the global RNG as for the original and the new layer starts from the same
    parameters. ``conv_use_fft`` is not copied: both paths compute the same convolution, so
    ``fft`` (default ``'auto'``) picks the faster one.

    Args:
        original_class: ``"CKConv"`` or ``"FlexConv"`` (a dotted path is fine).
        ckconv_kwargs: the original constructor's keyword arguments.
        fft: the new layer's ``fft`` setting.
    """
    import functools

    from flexcore.layers import CKConv, FlexConv, GaussianMask
    from flexcore.registry import KERNEL_NETS

    kind = original_class.rsplit(".", 1)[-1]
    if kind not in ("CKConv", "FlexConv"):
        raise OriginalCheckpointError(f"Unknown original conv class {original_class!r}; expected CKConv or FlexConv.")
    kw = dict(ckconv_kwargs)
    if kind == "FlexConv":
        kw.setdefault("mask_init_value", 0.075)
    name, hp = kernel_net_config(kw)
    dim = kw.get("kernel_dim_linear", 2)
    common = dict(
        kernel_net=functools.partial(KERNEL_NETS.get(name), **hp),
        horizon=kw["horizon"],
        bias=kw.get("conv_bias", True),
        fft=fft,
        causal=dim == 1,  # the original's 1-D layers are always causal
        sampling_rate_norm=kw.get("kernel_sampling_rate_norm", 1.0),
    )
    if kind == "CKConv":
        return CKConv(kw["in_channels"], kw["out_channels"], dim, **common)
    if kw.get("mask_type", "gaussian") != "gaussian" or not kw.get("mask_use", True):
        raise OriginalCheckpointError("Only the original's working mask (mask_use=True, mask_type='gaussian') converts.")
    mask = functools.partial(
        GaussianMask,
        init_value=kw["mask_init_value"],
        threshold=kw.get("mask_threshold", 0.1),
        temperature=kw.get("mask_temperature", 15.0),
    )
    return FlexConv(
        kw["in_channels"], kw["out_channels"], dim, mask=mask,
        dynamic_cropping=kw.get("mask_dynamic_cropping", True), **common,
    )


# -- whole models --------------------------------------------------------------------------
# FlexNet / TCN keep the original's module names (cconv1, norm1, blocks.{i}.*, out_layer;
# backbone.{i}.*, finallyr), CIFARResNet and TorchvisionResNet the original's / torchvision's,
# so only the keys inside each continuous convolution change.
_MODEL_CONV_PREFIX = re.compile(r"^(cconv1|(?:blocks|backbone)\.\d+\.cconv[12])\.")


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop a ``module.`` prefix (DataParallel/DDP) from every key, if all keys carry it."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def convert_original_model(
    original_sd: Mapping[str, torch.Tensor], kernel_type: Optional[str], dim: int
) -> Dict[str, torch.Tensor]:
    """A whole original model's state dict in flexcore's names.

    Works for FlexNet/CKCNN (``Img_ResNet``, ``SeqData_ResNet``), the TCNs, the CIFAR ResNets and
    the torchvision ResNets; plain ``Conv`` layers keep their ``weight``/``bias``.

    Args:
        original_sd: the original state dict; a ``module.`` prefix (DataParallel) is stripped.
        kernel_type: the original's ``kernel.type`` of its continuous convs (None if it has none).
        dim: spatial dims of the model (1 sequences, 2 images).
    """
    sd = strip_module_prefix(original_sd)
    prefixes = sorted({m.group(0) for k in sd for m in [_MODEL_CONV_PREFIX.match(k)] if m and ".Kernel." in k})
    if prefixes and kernel_type is None:
        raise OriginalCheckpointError(f"{prefixes[0].rstrip('.')} is a continuous conv: give the kernel_type.")
    out: Dict[str, torch.Tensor] = {}
    for prefix in prefixes:
        out.update(convert_conv(sd, prefix, kernel_type, dim, new_prefix=prefix))
    out.update({k: v for k, v in sd.items() if not any(k.startswith(p) for p in prefixes)})
    return out
