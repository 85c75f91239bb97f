"""Convert a checkpoint saved by the original FlexConv code into a flexcore checkpoint + gin config.

    python tools/convert_checkpoint.py checkpoint.pt --dataset CIFAR10 --horizon 33

Reads the original's ``{"model": state_dict, "optimizer", "lr_scheduler", "epoch"}`` dict (or a
bare state dict), works out the architecture (:mod:`flexcore.compat.original.spec`), renames
the weights (:func:`flexcore.compat.original.weights.convert_original_model`), loads them into the
flexcore model strictly, and writes ``<output-dir>/model.gin`` and ``<output-dir>/model_final.pth``.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from flexcore.compat.original.weights import (
    OriginalCheckpointError, convert_original_model, load_converted_strict, strip_module_prefix,
)
from flexcore.compat.original.spec import OriginalModelSpec, spec_from_config, spec_from_state_dict
from flexcore.utils.cli_args import add_output_dir_argument
from flexcore.utils.parameters import count_parameters

__all__ = ["load_original_checkpoint", "read_original_config", "convert_original_checkpoint", "main"]


def load_original_checkpoint(path: str, weights_only: bool = True) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """``(state_dict, rest)`` of an original checkpoint file (``rest``: epoch, ... without tensors' owners).

    Args:
        path: a file written by the original (``torch.save``).
        weights_only: safe loading (tensors and plain types only); False runs pickled code.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Original checkpoint {path!r} not found.")
    try:
        data = torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as exc:
        raise OriginalCheckpointError(
            f"Safe loading refused {path}: it stores Python objects beyond tensors and plain types "
            f"({str(exc).strip().splitlines()[0][:200]}). If you trust the file, pass --unsafe-load."
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise OriginalCheckpointError(
            f"{path} cannot be read as a torch checkpoint: it is truncated or not a checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})."
        ) from exc
    if isinstance(data, Mapping) and "model" in data and isinstance(data["model"], Mapping):
        state_dict = data["model"]
        rest = {k: v for k, v in data.items() if k != "model"}
    elif isinstance(data, Mapping) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        state_dict, rest = data, {}
    else:
        keys = sorted(data)[:10] if isinstance(data, Mapping) else type(data).__name__
        raise OriginalCheckpointError(
            f"{path} is neither an original checkpoint (a dict with a 'model' state dict) nor a bare "
            f"state dict; found {keys}."
        )
    return strip_module_prefix(state_dict), rest


def read_original_config(path: str) -> Dict[str, Any]:
    """The original's resolved config from YAML/JSON: Hydra's nested ``config.yaml`` or a W&B
    ``config.yaml`` (flat dotted keys, each ``{"value": ...}``)."""
    import yaml

    with open(path) as f:
        raw = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
    if not isinstance(raw, Mapping):
        raise OriginalCheckpointError(f"{path}: expected a mapping of config groups, got {type(raw).__name__}.")
    if "net" in raw and isinstance(raw["net"], Mapping):
        return dict(raw)
    nested: Dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping) and "value" in value:
            value = value["value"]
        node = nested
        *parents, leaf = str(key).split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    if "net" not in nested:
        raise OriginalCheckpointError(f"{path}: no 'net' group; is it the original run's config?")
    return nested


def _check_dataset(spec: OriginalModelSpec, dataset: str) -> None:
    from flexcore.data.base import describe_dataset

    meta = describe_dataset(dataset)
    got = (meta.in_channels, meta.num_classes, meta.dim)
    want = (spec.in_channels, spec.out_channels, spec.dim)
    if got != want:
        raise OriginalCheckpointError(
            f"Dataset {dataset!r} has (in_channels, classes, dim) = {got} but the checkpoint's model has {want}. "
            "Pick the dataset the checkpoint was trained on (or drop --dataset)."
        )


def _atomic_write(path: str, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def convert_original_checkpoint(
    path: str,
    output_dir: str,
    dataset: Optional[str] = None,
    original_config: Optional[str] = None,
    hints: Optional[Mapping[str, Any]] = None,
    weights_only: bool = True,
    overwrite: bool = False,
) -> Dict[str, Any]:
    """Convert ``path``; write ``model.gin`` and ``model_final.pth`` into ``output_dir``.

    Args:
        path: the original checkpoint.
        output_dir: where to write (created).
        dataset: registered dataset name: checked against the model and written as ``Data.dataset``.
        original_config: the original run's config file (exact architecture instead of inference).
        hints: settings the weights do not store (see ``spec.HINTS``).
        weights_only: safe loading.
        overwrite: replace existing outputs.

    Returns:
        ``{"spec", "gin", "weights", "gin_text", "num_parameters", "notes"}``.
    """
    state_dict, rest = load_original_checkpoint(path, weights_only)
    if original_config:
        spec = _spec_with_channels(read_original_config(original_config), state_dict, hints or {})
    else:
        spec = spec_from_state_dict(state_dict, **(hints or {}))
    if dataset:
        _check_dataset(spec, dataset)
    model = spec.build()
    converted = convert_original_model(state_dict, spec.kernel_type, spec.dim)
    load_converted_strict(
        model, converted, f"The converted weights of {path} do not fit the inferred model",
        "Give the architecture explicitly with --original-config (the run's config.yaml) or the hint flags.",
    )

    os.makedirs(output_dir, exist_ok=True)
    gin_path = os.path.join(output_dir, "model.gin")
    weights_path = os.path.join(output_dir, "model_final.pth")
    for target in (gin_path, weights_path):
        if os.path.exists(target) and not overwrite:
            raise FileExistsError(f"{target} exists; pass --overwrite or another --output-dir.")
    header = [
        f"Converted from the original FlexConv checkpoint {os.path.abspath(path)}",
        "by tools/convert_checkpoint.py. Evaluate with:",
        f"  python tools/train_net.py --gin-file <your dataset/training config> --gin-file {gin_path} \\",
        f"      --eval-only --weights {weights_path}",
    ]
    extra = [f"Data.dataset = {dataset!r}"] if dataset else []
    gin_text = spec.gin(header=header, extra=extra)
    payload: Dict[str, Any] = {"model": model.state_dict(), "converted_from": os.path.abspath(path)}
    if isinstance(rest.get("epoch"), int):
        payload["epoch"] = rest["epoch"]
    _atomic_write(weights_path, lambda f: torch.save(payload, f))
    _atomic_write(gin_path, lambda f: f.write(gin_text.encode()))
    return {
        "spec": spec,
        "gin": gin_path,
        "weights": weights_path,
        "gin_text": gin_text,
        "num_parameters": count_parameters(model),
        "notes": list(spec.notes),
        "dropped": sorted(k for k in rest if k != "epoch"),
    }


def _spec_with_channels(config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor],
                        hints: Mapping[str, Any]) -> OriginalModelSpec:
    """Config-based spec; channels (not in the config) taken from the weights."""
    inferred = spec_from_state_dict(state_dict, **{**hints, "horizon": hints.get("horizon") or "same"})
    return spec_from_config(config, inferred.in_channels, inferred.out_channels,
                            per_step=inferred.backbone_hp.get("head") == "per_step")




def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert an original FlexConv checkpoint into a flexcore checkpoint and gin config.",
        epilog="Weights do not store some settings; the flags below give them (defaults: the paper's).",
    )
    parser.add_argument("checkpoint", help="file saved by the original code (dict with 'model', or a state dict)")
    add_output_dir_argument(parser, "<checkpoint name>_flexcore next to the checkpoint",
                            what="flexcore checkpoint and gin config")
    parser.add_argument("--dataset", default=None, help="registered dataset the model was trained on (checked)")
    parser.add_argument("--original-config", default=None,
                        help="the original run's config.yaml/.json (Hydra or W&B): exact architecture")
    parser.add_argument("--horizon", default=None,
                        help="conv grid size (2D: resolution + 1, e.g. 33); needed if the file never ran a forward")
    parser.add_argument("--nonlinearity", default=None, choices=["ReLU", "LeakyReLU"])
    parser.add_argument("--dropout", type=float, default=None)
    parser.add_argument("--dropout-in", type=float, default=None)
    parser.add_argument("--kernel-type", default=None,
                        choices=["MAGNet", "Gabor", "Fourier", "SIREN", "nSIREN", "MLP"])
    parser.add_argument("--input-scale", type=float, default=None, help="MAGNet/Gabor input_scale (init only)")
    parser.add_argument("--mask-init-value", type=float, default=None, help="FlexConv mask init (init only)")
    parser.add_argument("--no-dynamic-cropping", action="store_true")
    parser.add_argument("--mlp-activation", default=None, choices=["ReLU", "LeakyReLU", "Swish"])
    parser.add_argument("--learn-omega-0", action="store_true", help="SIREN omega_0 was learned")
    parser.add_argument("--per-step", action="store_true", help="copy-memory TCN (head on every step)")
    parser.add_argument("--unsafe-load", action="store_true", help="torch.load without weights_only (trusted files)")
    parser.add_argument("--overwrite", action="store_true")
    return parser


def _hints(args: argparse.Namespace) -> Dict[str, Any]:
    horizon = args.horizon
    if horizon is not None and horizon not in ("same", "full"):
        horizon = int(horizon)
    return {
        "horizon": horizon, "nonlinearity": args.nonlinearity, "dropout": args.dropout,
        "dropout_in": args.dropout_in, "kernel_type": args.kernel_type, "input_scale": args.input_scale,
        "mask_init_value": args.mask_init_value, "dynamic_cropping": False if args.no_dynamic_cropping else None,
        "mlp_activation": args.mlp_activation, "learn_omega_0": True if args.learn_omega_0 else None,
        "head": "per_step" if args.per_step else None,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    output_dir = args.output_dir or os.path.splitext(os.path.abspath(args.checkpoint))[0] + "_flexcore"
    try:
        result = convert_original_checkpoint(
            args.checkpoint, output_dir, dataset=args.dataset, original_config=args.original_config,
            hints=_hints(args), weights_only=not args.unsafe_load, overwrite=args.overwrite,
        )
    except (OriginalCheckpointError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    spec = result["spec"]
    lines: List[str] = [
        f"{spec.backbone} ({spec.conv or 'own convs'}"
        f"{', ' + spec.kernel_net if spec.kernel_net else ''}{', ' + spec.mask if spec.mask else ''}), "
        f"in {spec.in_channels}, out {spec.out_channels}, dim {spec.dim}, {result['num_parameters']:,} parameters",
        f"wrote {result['gin']}",
        f"wrote {result['weights']}",
    ]
    if result["notes"]:
        lines.append("assumed (override with the flags if your run differed):")
        lines += [f"  - {note}" for note in result["notes"]]
    if result["dropped"]:
        lines.append(f"not converted: {', '.join(result['dropped'])} (optimiser/scheduler state of the original)")
    print("\n".join(lines))
    return 0
