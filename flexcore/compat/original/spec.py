"""Which flexcore model matches an original FlexConv model, from its config or its weights.

An :class:`OriginalModelSpec` names the backbone, convolution, kernel net and mask with
their hyper-parameters; it builds the model (:meth:`~OriginalModelSpec.build`) and writes
the gin bindings that build the same model (:meth:`~OriginalModelSpec.gin`).

- :func:`spec_from_config`: from the original's resolved Hydra config (groups ``net``,
  ``kernel``, ``conv``, ``mask``), exact.
- :func:`spec_from_state_dict`: inferred from a state dict's keys and shapes (number of
  blocks, widths, kernel-net family and sizes, mask, dim, ...). What weights cannot tell
  (nonlinearity, dropout, an unset horizon, init-only settings) comes from ``hints`` or
  takes the paper's value; every such assumption is listed in ``spec.notes``.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from flexcore.compat.original.weights import (
    OriginalCheckpointError,
    ckconv_kwargs_from_config,
    kernel_net_config,
    strip_module_prefix,
)

__all__ = ["OriginalModelSpec", "spec_from_config", "spec_from_state_dict", "HINTS"]

# Settings a state dict does not store, with the paper's values as defaults.
HINTS: Dict[str, Any] = {
    "horizon": None,          # conv grid size; needed for 2D checkpoints saved before any forward
    "nonlinearity": "ReLU",
    "dropout": None,          # None: the backbone's default (FlexNet 0.2, TCN 0.1)
    "dropout_in": 0.0,
    "kernel_type": None,      # SIREN vs nSIREN, MAGNet vs Gabor in 1D (same forward), MLP activation
    "input_scale": 25.6,      # MAGNet/Gabor init only
    "mask_init_value": 0.075,  # init only (and MAGNet's initial centre spread)
    "dynamic_cropping": True,
    "mlp_activation": "ReLU",
    "learn_omega_0": False,
    "head": None,             # 'per_step' for the copy-memory TCN
}


@dataclasses.dataclass
class OriginalModelSpec:
    """A flexcore model equivalent to an original one.

    Attributes:
        backbone: ``BACKBONES`` name (``FlexNet``, ``TCN``, ``CIFARResNet``, ``TorchvisionResNet``).
        in_channels, out_channels, dim: the model's contract arguments.
        backbone_hp: backbone keyword arguments.
        conv, conv_hp: ``CONVS`` name and arguments (None for baselines with their own convs).
        kernel_net, kernel_hp: ``KERNEL_NETS`` name and arguments (continuous convs).
        mask, mask_hp: ``MASKS`` name and arguments (FlexConv).
        kernel_type: the original's ``kernel.type`` (how its kernel-net keys are laid out).
        notes: assumptions made where the source did not say.
    """

    backbone: str
    in_channels: int
    out_channels: int
    dim: int
    backbone_hp: Dict[str, Any] = dataclasses.field(default_factory=dict)
    conv: Optional[str] = None
    conv_hp: Dict[str, Any] = dataclasses.field(default_factory=dict)
    kernel_net: Optional[str] = None
    kernel_hp: Dict[str, Any] = dataclasses.field(default_factory=dict)
    mask: Optional[str] = None
    mask_hp: Dict[str, Any] = dataclasses.field(default_factory=dict)
    kernel_type: Optional[str] = None
    notes: List[str] = dataclasses.field(default_factory=list)

    def conv_factory(self):
        """The conv factory (a ``functools.partial`` of registered classes), or None."""
        from flexcore.registry import CONVS, KERNEL_NETS, MASKS

        if self.conv is None:
            return None
        kwargs = dict(self.conv_hp)
        if self.kernel_net is not None:
            kwargs["kernel_net"] = functools.partial(KERNEL_NETS.get_raw(self.kernel_net), **self.kernel_hp)
        if self.mask is not None:
            kwargs["mask"] = functools.partial(MASKS.get_raw(self.mask), **self.mask_hp)
        return functools.partial(CONVS.get_raw(self.conv), **kwargs)

    def build(self) -> nn.Module:
        """Build the model directly (no gin state involved); seeded like the original, same init."""
        from flexcore.registry import BACKBONES

        conv = self.conv_factory()
        extra = {} if conv is None else {"conv": conv}
        return BACKBONES.get_raw(self.backbone)(
            self.in_channels, self.out_channels, self.dim, **extra, **self.backbone_hp
        )

    def bindings(self) -> List[str]:
        """Gin bindings that make ``build_model(metadata)`` build this model."""
        lines = [f"build_model.backbone = @{self.backbone}"]
        lines += [f"{self.backbone}.{k} = {_gin_value(v)}" for k, v in self.backbone_hp.items()]
        if self.conv is not None:
            lines.append(f"{self.backbone}.conv = @{self.conv}")
            if self.kernel_net is not None:
                lines.append(f"{self.conv}.kernel_net = @{self.kernel_net}")
            if self.mask is not None:
                lines.append(f"{self.conv}.mask = @{self.mask}")
            lines += [f"{self.conv}.{k} = {_gin_value(v)}" for k, v in self.conv_hp.items()]
            if self.kernel_net is not None:
                lines += [f"{self.kernel_net}.{k} = {_gin_value(v)}" for k, v in self.kernel_hp.items()]
            if self.mask is not None:
                lines += [f"{self.mask}.{k} = {_gin_value(v)}" for k, v in self.mask_hp.items()]
        return lines

    def gin(self, header: Sequence[str] = (), extra: Sequence[str] = ()) -> str:
        """A gin file: comment header, the notes, the model bindings, then ``extra`` lines."""
        out = [f"# {line}" if line else "#" for line in header]
        out.append(
            f"# Model: {self.backbone}, in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"dim={self.dim} (taken from the dataset's metadata at build time; they must match)."
        )
        if self.notes:
            out.append("# Assumed (not stored in the source; override if your run differed):")
            out += [f"#   - {note}" for note in self.notes]
        out.append("")
        out += self.bindings()
        if extra:
            out.append("")
            out += list(extra)
        return "\n".join(out) + "\n"


def _gin_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_gin_value(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise TypeError(f"cannot write {value!r} as a gin value")


def _f32(tensor: torch.Tensor) -> float:
    """A float32 buffer's value as the shortest decimal that rounds back to it (0.1, not 0.10000000149)."""
    return float(str(tensor.reshape(-1)[0].to(torch.float32).numpy()))


def _horizon(value: Any) -> Any:
    if isinstance(value, str) and value not in ("same", "full"):
        return int(value)
    return value


# ---------------------------------------------------------------------------------------
# From the original's config.
def spec_from_config(
    config: Mapping[str, Any], in_channels: int, out_channels: int, per_step: bool = False
) -> OriginalModelSpec:
    """The flexcore model of an original resolved config (``net``, ``kernel``, ``conv``, ``mask``).

    Args:
        config: the original's config (e.g. a fixture's ``config`` or a run's ``config.yaml``).
        in_channels, out_channels: as the original's ``model_constructor`` set them.
        per_step: the copy-memory TCN (head on every step).
    """
    net, conv = config["net"], config["conv"]
    dim = int(config["kernel"]["dim_linear"])
    net_type = net["type"]
    match = re.fullmatch(r"CIFARResNet(\d+)", net_type)
    if match:
        return OriginalModelSpec("CIFARResNet", in_channels, out_channels, dim, {"depth": int(match.group(1))})
    match = re.fullmatch(r"OriginalResnet(\d+)", net_type)
    if match:
        return OriginalModelSpec("TorchvisionResNet", in_channels, out_channels, dim,
                                 {"arch": f"resnet{match.group(1)}"})
    if net_type not in ("ResNet", "TCN"):
        raise OriginalCheckpointError(f"Unknown original net.type {net_type!r} (known: ResNet, TCN, "
                                      "CIFARResNet<depth>, OriginalResnet<depth>).")
    backbone = "FlexNet" if net_type == "ResNet" else "TCN"
    backbone_hp = {
        "hidden_channels": int(net["no_hidden"]),
        "num_blocks": int(net["no_blocks"]),
        "block_width_factors": list(net["block_width_factors"]),
        "norm": net["norm"],
        "nonlinearity": net["nonlinearity"],
        "dropout": float(net["dropout"]),
        "dropout_in": float(net.get("dropout_in", 0.0) or 0.0),
    }
    if per_step:
        backbone_hp["head"] = "per_step"
    spec = OriginalModelSpec(backbone, in_channels, out_channels, dim, backbone_hp)
    conv_type = conv["type"]
    if conv_type == "Conv":
        spec.conv = "Conv"
        spec.conv_hp = {"kernel_size": int(conv["horizon"]), "bias": bool(conv["bias"])}
        if dim == 1:
            spec.notes.append("1D Conv is causal in flexcore's TCN/FlexNet (the original's was 'same', non-causal)")
        return spec
    if conv_type not in ("CKConv", "FlexConv"):
        raise OriginalCheckpointError(
            f"conv.type {conv_type!r} cannot be converted: SRF (N-Jet) came from an external package "
            "the original does not ship; flexcore's SRFConv is a re-implementation with its own weights."
        )
    kwargs = ckconv_kwargs_from_config(config)
    if conv_type == "CKConv":  # CKConv takes no mask arguments (they would move MAGNet's centres)
        kwargs = {k: v for k, v in kwargs.items() if not k.startswith("mask_")}
    spec.kernel_type = config["kernel"]["type"]
    spec.kernel_net, spec.kernel_hp = kernel_net_config(kwargs)
    spec.conv = conv_type
    spec.conv_hp = {"horizon": _horizon(conv["horizon"]), "bias": bool(conv["bias"])}
    if float(config["kernel"].get("sampling_rate_norm", 1.0)) != 1.0:
        spec.conv_hp["sampling_rate_norm"] = float(config["kernel"]["sampling_rate_norm"])
    if conv_type == "FlexConv":
        mask = config["mask"]
        if mask.get("type", "gaussian") != "gaussian":
            raise OriginalCheckpointError(f"mask.type {mask.get('type')!r}: the original only implements 'gaussian'.")
        spec.conv_hp["dynamic_cropping"] = bool(mask.get("dynamic_cropping", True))
        if mask.get("use", True):
            spec.mask = "GaussianMask"
            spec.mask_hp = {"init_value": float(mask["init_value"]), "threshold": float(mask["threshold"]),
                            "temperature": float(mask["temperature"])}
        else:
            spec.mask = "NoMask"
            spec.mask_hp = {"threshold": float(mask["threshold"])}
            spec.conv_hp["dynamic_cropping"] = False
            spec.notes.append("mask.use=False: no mask and no cropping (the original still cropped by its unused mask)")
    return spec


# ---------------------------------------------------------------------------------------
# From a state dict.
def _require(state_dict: Mapping[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    if key not in state_dict:
        raise OriginalCheckpointError(f"Expected {key!r} ({what}) in the state dict; first keys: {list(state_dict)[:8]}.")
    return state_dict[key]


def _width_factors(widths: Sequence[int], base: int) -> List[Any]:
    """Flat ``(factor, count)`` pairs with ``int(base * factor) == width`` for every block."""
    pairs: List[Any] = []
    for width in widths:
        factor = width / base
        if int(base * factor) != width:  # float rounding just below an integer
            factor = (width + 0.5) / base
        if pairs and pairs[-2] == factor:
            pairs[-1] += 1
        else:
            pairs += [factor, 1]
    return pairs


def _kernel_spec(sd: Mapping[str, torch.Tensor], prefix: str, dim: int, hints: Dict[str, Any],
                 notes: List[str]) -> Tuple[str, str, Dict[str, Any]]:
    """``(original kernel type, flexcore KERNEL_NETS name, hp)`` from ``<prefix>Kernel.*`` keys."""
    k = prefix + "Kernel."
    keys = [key[len(k):] for key in sd if key.startswith(k)]
    bias = any(key.endswith("output_linear.bias") for key in keys) or any(
        re.fullmatch(r"kernel_net\.\d+\.bias", key) for key in keys)
    kernel_type = hints.get("kernel_type")
    if any(key.startswith("filters.") for key in keys):
        hidden = int(sd[k + "filters.0.linear.weight"].shape[0])
        layers = len({key.split(".")[1] for key in keys if re.match(r"linear\.\d+\.", key)})
        gamma = sd.get(k + "filters.0.gamma")
        if gamma is None:
            detected = "Fourier"
        elif (gamma.shape[1] == dim and dim > 1) or k + "filters.0.theta" in sd:
            detected = "MAGNet"
        elif dim == 1:
            detected = "MAGNet"  # 1D MAGNet and Gabor share layout and forward; only their init differs
            if kernel_type is None:
                notes.append("kernel: 1D Gabor-type kernel net taken as MAGNet (identical forward; "
                             "kernel_type='Gabor' if you want GaborNet's init)")
        else:
            detected = "Gabor"
        kernel_type = kernel_type or detected
        kwargs = {"kernel_type": kernel_type, "kernel_no_hidden": hidden, "kernel_no_layers": layers,
                  "conv_bias": bias, "kernel_steerable": k + "filters.0.theta" in sd,
                  "kernel_input_scale": hints["input_scale"]}
        if kernel_type in ("MAGNet", "Gabor"):
            notes.append(f"kernel input_scale={hints['input_scale']} (init only)")
    elif any(key.startswith("kernel_net.") for key in keys):
        indices = sorted({int(key.split(".")[1]) for key in keys})
        weight_norm = any(key.endswith("weight_g") for key in keys)
        first = sd[f"{k}kernel_net.0.weight_v" if weight_norm else f"{k}kernel_net.0.weight"]
        hidden = int(first.shape[0])
        if f"{k}kernel_net.0.omega_0" in sd:
            if kernel_type is None:
                notes.append("kernel: SIREN (nSIREN has the same keys; kernel_type='nSIREN' if yours was)")
            kernel_type = kernel_type or "SIREN"
            kwargs = {"kernel_type": kernel_type, "kernel_no_hidden": hidden, "kernel_no_layers": len(indices),
                      "kernel_omega_0": _f32(sd[f"{k}kernel_net.0.omega_0"]),
                      "kernel_learn_omega_0": hints["learn_omega_0"], "kernel_weight_norm": weight_norm,
                      "conv_bias": bias}
        else:
            kernel_type = kernel_type or "MLP"
            norm = ""
            if any(re.fullmatch(r"kernel_net\.1\.running_mean", key) for key in keys):
                norm = "BatchNorm"
            elif any(key.startswith("kernel_net.1.") for key in keys):
                norm = "LayerNorm"
            linears = [i for i in indices if i % 3 == 0]
            kwargs = {"kernel_type": "MLP", "kernel_no_hidden": hidden, "kernel_no_layers": len(linears),
                      "kernel_norm": norm, "kernel_activ_function": hints["mlp_activation"],
                      "kernel_weight_norm": weight_norm, "conv_bias": bias}
            notes.append(f"kernel MLP activation {hints['mlp_activation']}")
    else:
        raise OriginalCheckpointError(f"No kernel-net keys under {k!r}.")
    if prefix + "mask_params" in sd:
        kwargs["mask_init_value"] = hints["mask_init_value"]
    name, hp = kernel_net_config(kwargs)
    return kernel_type, name, hp


def _conv_spec(spec: OriginalModelSpec, sd: Mapping[str, torch.Tensor], prefix: str, hints: Dict[str, Any]) -> None:
    """Fill the conv / kernel / mask part of ``spec`` from the stem conv at ``prefix``."""
    if any(key.startswith(prefix + "Kernel.") for key in sd):
        spec.kernel_type, spec.kernel_net, spec.kernel_hp = _kernel_spec(sd, prefix, spec.dim, hints, spec.notes)
        spec.conv = "FlexConv" if prefix + "mask_params" in sd else "CKConv"
        length = int(sd[prefix + "train_length"].reshape(-1)[0]) if prefix + "train_length" in sd else 0
        horizon = hints["horizon"]
        if horizon is None:
            if spec.dim == 1:
                horizon = "same"
                spec.notes.append("horizon 'same' (the original's sequence setting; the trained grid length "
                                  f"{length} is kept in train_length)" if length else "horizon 'same'")
            elif length:
                horizon = length
            else:
                raise OriginalCheckpointError(
                    "The checkpoint's grid size is unset (train_length 0: saved before any forward pass); "
                    "give the horizon (--horizon, resolution + 1, e.g. 33 for 32px images)."
                )
        spec.conv_hp = {"horizon": _horizon(horizon), "bias": prefix + "bias" in sd}
        if spec.conv == "FlexConv":
            spec.conv_hp["dynamic_cropping"] = hints["dynamic_cropping"]
            spec.mask = "GaussianMask"
            spec.mask_hp = {
                "init_value": hints["mask_init_value"],
                "threshold": _f32(_require(sd, prefix + "mask_threshold", "mask threshold")),
                "temperature": _f32(sd[prefix + "temperature"]) if prefix + "temperature" in sd else 15.0,
            }
            spec.notes.append(f"mask init_value {hints['mask_init_value']} (init only)")
    elif prefix + "weight" in sd and sd[prefix + "weight"].dim() == spec.dim + 2:
        weight = sd[prefix + "weight"]
        spec.conv = "Conv"
        sizes = tuple(int(s) for s in weight.shape[2:])
        spec.conv_hp = {"kernel_size": sizes[0] if len(set(sizes)) == 1 else list(sizes), "bias": prefix + "bias" in sd}
    else:
        raise OriginalCheckpointError(
            f"Cannot tell the convolution type of {prefix.rstrip('.')!r} (keys: "
            f"{[k for k in sd if k.startswith(prefix)][:6]}); SRF (N-Jet) checkpoints are not convertible."
        )


def _norm_of(sd: Mapping[str, torch.Tensor], prefix: str) -> str:
    if prefix + "running_mean" in sd:
        return "BatchNorm"
    return "LayerNorm" if prefix + "weight" in sd else "none"


def _width(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    """Output width of the stem (``prefix=""``) or of a block (``"blocks.3."``)."""
    for key in ("norm1.weight", "cconv1.bias", "cconv1.weight"):
        if prefix + key in sd:
            return int(sd[prefix + key].shape[0])
    raise OriginalCheckpointError(f"Cannot tell the width of {prefix.rstrip('.') or 'the stem'!r}.")


def _resnet_like_spec(sd: Mapping[str, torch.Tensor], hints: Dict[str, Any]) -> OriginalModelSpec:
    tcn = "finallyr.weight" in sd
    blocks_key = "backbone" if tcn else "blocks"
    count = len({int(m.group(1)) for key in sd for m in [re.match(rf"{blocks_key}\.(\d+)\.", key)] if m})
    if count == 0 and tcn:
        raise OriginalCheckpointError("A TCN state dict without blocks (backbone.<i>.*).")
    widths = [_width(sd, f"{blocks_key}.{i}.") for i in range(count)]
    head = sd["finallyr.weight" if tcn else "out_layer.weight"]
    dim = 1 if tcn else head.dim() - 2
    stem = f"{blocks_key}.0.cconv1." if tcn else "cconv1."
    norm_prefix = f"{blocks_key}.0.norm1." if tcn else "norm1."
    stem_width = widths[0] if tcn else _width(sd, "")
    # Input channels: the stem's kernel (Cout*Cin outputs of the kernel net, or a conv weight).
    spec = OriginalModelSpec("TCN" if tcn else "FlexNet", 0, int(head.shape[0]), dim)
    _conv_spec(spec, sd, stem, hints)
    if spec.conv == "Conv":
        spec.in_channels = int(sd[stem + "weight"].shape[1])
    else:
        out_rows = _stem_kernel_rows(sd, stem)
        spec.in_channels = out_rows // stem_width
    base = stem_width
    spec.backbone_hp = {
        "hidden_channels": base,
        "num_blocks": count,
        "block_width_factors": _width_factors(widths, base),
        "norm": _norm_of(sd, norm_prefix),
        "nonlinearity": hints["nonlinearity"],
    }
    if hints["dropout"] is not None:
        spec.backbone_hp["dropout"] = float(hints["dropout"])
    spec.backbone_hp["dropout_in"] = float(hints["dropout_in"])
    if hints["head"]:
        spec.backbone_hp["head"] = hints["head"]
    spec.notes.append(f"nonlinearity {hints['nonlinearity']}; dropout "
                      f"{hints['dropout'] if hints['dropout'] is not None else 'backbone default'} (training only)")
    return spec


def _stem_kernel_rows(sd: Mapping[str, torch.Tensor], stem: str) -> int:
    for suffix in ("Kernel.output_linear.weight", "Kernel.output_linear.weight_v"):
        if stem + suffix in sd:
            return int(sd[stem + suffix].shape[0])
    last = max(int(k.split(".")[-2]) for k in sd if re.match(re.escape(stem) + r"Kernel\.kernel_net\.\d+\.weight", k)
               or re.match(re.escape(stem) + r"Kernel\.kernel_net\.\d+\.weight_v", k))
    key = f"{stem}Kernel.kernel_net.{last}.weight"
    return int(sd[key if key in sd else key + "_v"].shape[0])


def spec_from_state_dict(state_dict: Mapping[str, torch.Tensor], **hints: Any) -> OriginalModelSpec:
    """Infer the flexcore model of an original state dict from its keys and shapes.

    Args:
        state_dict: the original model's state dict (a ``module.`` prefix is stripped).
        hints: what the weights do not store (see :data:`HINTS`): ``horizon``,
            ``nonlinearity``, ``dropout``, ``dropout_in``, ``kernel_type``, ``input_scale``,
            ``mask_init_value``, ``dynamic_cropping``, ``mlp_activation``, ``learn_omega_0``, ``head``.
    """
    unknown = set(hints) - set(HINTS)
    if unknown:
        raise TypeError(f"Unknown hints {sorted(unknown)}; known: {sorted(HINTS)}.")
    hints = {**HINTS, **{k: v for k, v in hints.items() if v is not None}}
    sd = strip_module_prefix(state_dict)
    if "out_layer.weight" in sd or "finallyr.weight" in sd:
        return _resnet_like_spec(sd, hints)
    if "linear.weight" in sd and "layer3.0.conv1.weight" in sd:
        n = len({key.split(".")[1] for key in sd if key.startswith("layer1.")})
        conv1 = sd["conv1.weight"]
        return OriginalModelSpec("CIFARResNet", int(conv1.shape[1]), int(sd["linear.weight"].shape[0]),
                                 conv1.dim() - 2, {"depth": 6 * n + 2, "base_width": int(conv1.shape[0])})
    if "fc.weight" in sd and "layer4.0.conv1.weight" in sd:
        from flexcore.modeling.backbones.torchvision_resnet import TORCHVISION_ARCHS

        counts = tuple(len({k.split(".")[1] for k in sd if k.startswith(f"layer{i}.")}) for i in range(1, 5))
        bottleneck = "layer1.0.conv3.weight" in sd
        observed = (int(sd["layer1.0.conv1.weight"].shape[0]), int(sd["layer1.0.conv2.weight"].shape[1]))
        for arch, (block, layers, extra) in TORCHVISION_ARCHS.items():
            groups = extra.get("groups", 1)
            width = int(64 * extra.get("width_per_group", 64) / 64) * groups if block == "Bottleneck" else 64
            if tuple(layers) == counts and (block == "Bottleneck") == bottleneck and observed == (
                    width, width // groups):
                conv1 = sd["conv1.weight"]
                hp: Dict[str, Any] = {"arch": arch}
                if conv1.shape[-1] == 3:
                    hp["small_input"] = True
                return OriginalModelSpec("TorchvisionResNet", int(conv1.shape[1]), int(sd["fc.weight"].shape[0]), 2, hp)
        raise OriginalCheckpointError(f"A torchvision-style ResNet with blocks {counts} matches no known arch.")
    raise OriginalCheckpointError(
        "Not a state dict of an original FlexConv model: expected FlexNet keys (cconv1.*, blocks.<i>.*, "
        "out_layer.*), TCN keys (backbone.<i>.*, finallyr.*), a CIFAR ResNet (conv1, layer1-3, linear) or a "
        f"torchvision ResNet (conv1, layer1-4, fc); got {list(sd)[:8]}."
    )
