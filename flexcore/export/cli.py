"""``tools/export_model.py`` / ``flexcore-export``: a trained model as torch.export, TorchScript and ONNX files.

    tools/export_model.py --config-file quick/digits_flexnet.gin --weights output/quick_digits_flexnet/model_final.pth
    tools/export_model.py --config-file cifar10/flexnet7.gin --weights model_final.pth --formats pt2 onnx

The model comes from the gin config exactly as training builds it, takes the weights, is
baked (kernels generated once, BatchNorms folded, plain ``torch.nn`` convolutions on the
direct path) and written with a dynamic batch dimension. Each file is then loaded back and
run on samples of the dataset (``--split``, or random ones with ``--fake-data``); its
outputs are compared with the unbaked model's, and a relative error above ``--tolerance``
fails the command (exit 1). The files load without flexcore: see docs/export.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from flexcore.config import ConfigError, parse_config
from flexcore.export.formats import FORMATS, INSTALL_HINT, missing_requirements, output_path
from flexcore.export.prepare import prepare_for_export
from flexcore.utils.cli_args import add_config_arguments, resolve_output_dir
from flexcore.utils.logger import setup_logger

__all__ = ["build_parser", "export", "main", "max_errors"]

logger = logging.getLogger("flexcore")
OUTPUT_FOLDER = "export"  # files go to output/export/<config name> by default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Bake a trained flexcore model and write it as torch.export (.pt2), TorchScript (.ts) "
        "and ONNX (.onnx) files that load without flexcore; each file is checked against the model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    add_config_arguments(parser, tool=OUTPUT_FOLDER, what="exported files", output_aliases=("--output",))
    parser.add_argument("--weights", required=True, metavar="PATH",
                        help="flexcore checkpoint to export (e.g. <run>/model_final.pth)")
    parser.add_argument("--unsafe-load", action="store_true",
                        help="load the checkpoint with full pickle (torch.load weights_only=False): only for files you trust")
    parser.add_argument("--formats", nargs="+", choices=sorted(FORMATS), default=None,
                        help="formats to write (default: every one whose packages are installed)")
    parser.add_argument("--split", default="test", help="dataset split the check samples come from (default test)")
    parser.add_argument("--num-samples", type=int, default=64, help="samples to check the exported files on (default 64)")
    parser.add_argument("--fake-data", action="store_true",
                        help="check on random samples of the dataset's shape (no dataset files needed)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest accepted max |exported - model| / max |model| (default 1e-4)")
    return parser


def max_errors(output: torch.Tensor, reference: torch.Tensor) -> Dict[str, float]:
    """Max absolute error and max relative error (scaled by the reference's largest magnitude)."""
    output, reference = output.detach().double(), reference.detach().double()
    if output.shape != reference.shape:
        return {"max_abs_error": float("inf"), "max_rel_error": float("inf")}
    abs_error = (output - reference).abs().max().item()
    return {"max_abs_error": abs_error, "max_rel_error": abs_error / max(reference.abs().max().item(), 1e-12)}


def _check(run, inputs: torch.Tensor, reference: torch.Tensor) -> Dict[str, float]:
    """Run on the whole sample batch and on a single sample (the batch dimension is dynamic)."""
    with torch.no_grad():
        whole = max_errors(run(inputs), reference)
        single = max_errors(run(inputs[:1]), reference[:1])
    return {key: max(whole[key], single[key]) for key in whole}


def _formats_to_write(requested: Optional[List[str]]) -> List[str]:
    """The requested formats (all by default); a format requested by name whose packages are
    missing is a :class:`ConfigError`, a default one is skipped with the install line."""
    names = list(dict.fromkeys(requested or FORMATS))
    missing = missing_requirements(names)
    if missing and requested:
        needs = "; ".join(f"{name} needs {', '.join(mods)}" for name, mods in missing.items())
        raise ConfigError(f"--formats: {needs}. Install the export extra: {INSTALL_HINT}")
    for name, mods in missing.items():
        logger.warning("Skipping %s: it needs %s, which are not installed. Install the export extra: %s",
                       name, ", ".join(mods), INSTALL_HINT)
    return [name for name in names if name not in missing]


def _load_model_and_samples(args: argparse.Namespace):
    from flexcore.analysis.cli import load_analysis_setup
    from flexcore.checkpoint import Checkpointer

    setup = load_analysis_setup(args.fake_data, "cpu", split=args.split)
    model = setup.build_model()
    Checkpointer(model, weights_only=not args.unsafe_load).load(args.weights, checkpointables=[])
    inputs, _ = setup.batch(max(1, args.num_samples))
    return model.eval(), inputs.float(), setup


def export(args: argparse.Namespace) -> Dict[str, Any]:
    """Write and check the formats; returns the report that ``export.json`` holds."""
    import flexcore.engine.trainer  # noqa: F401  (registers Trainer, which experiment configs bind)

    if not os.path.isfile(args.weights):  # before any folder is made
        raise FileNotFoundError(f"--weights {args.weights!r}: no such file.")
    parse_config(args.config_files, list(args.bindings), plugins=args.plugins, finalize=False)
    output_dir = resolve_output_dir(args, tool=OUTPUT_FOLDER)
    os.makedirs(output_dir, exist_ok=True)
    setup_logger(output_dir, name="flexcore")
    formats = _formats_to_write(args.formats)
    model, inputs, setup = _load_model_and_samples(args)
    with torch.no_grad():
        reference = model(inputs)
    # Trace on two samples: torch.export specialises a batch of one to a constant.
    trace_sample = inputs[:2] if len(inputs) > 1 else inputs.repeat(2, *([1] * (inputs.dim() - 1)))
    baked, replaced = prepare_for_export(model, trace_sample)
    if any(setting != "False" for _, setting in replaced):
        logger.info("Exported on the direct convolution path (ONNX has no complex arithmetic for flexcore's FFT "
                    "path; same function, slower for large kernels): %s", ", ".join(n for n, _ in replaced))
    results: Dict[str, Dict[str, Any]] = {"baked model": {"file": None, **_check(baked, inputs, reference)}}
    for name in formats:
        results[name] = _write_and_check(name, output_dir, baked, trace_sample, inputs, reference)
    for result in results.values():
        result["ok"] = result["max_rel_error"] <= args.tolerance
    report = {
        "config_files": list(args.config_files), "bindings": list(args.bindings), "weights": args.weights,
        "input_shape": ["batch", *inputs.shape[1:]], "input_dtype": str(inputs.dtype).replace("torch.", ""),
        "num_classes": setup.metadata.num_classes, "dataset": setup.dataset_name,
        "check_samples": f"{len(inputs)} {'random samples' if args.fake_data else f'samples of the {args.split} split'}",
        "tolerance": args.tolerance, "torch": torch.__version__, "output_dir": output_dir, "direct_path_layers": [n for n, _ in replaced],
        "formats": results,
    }
    with open(os.path.join(output_dir, "export.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    logger.info("Export of %s to %s (checked on %s against the unbaked model):\n%s",
                args.weights, output_dir, report["check_samples"], _table(results, args.tolerance))
    return report


def _write_and_check(name: str, output_dir: str, baked: nn.Module, trace_sample: torch.Tensor,
                     inputs: torch.Tensor, reference: torch.Tensor) -> Dict[str, Any]:
    """One format: write it (via a temporary name, so a failed export leaves no complete-looking
    file), load it back, compare. An exporter's error is reported, not raised: the other
    formats may still work."""
    path = output_path(output_dir, name)
    root, ext = os.path.splitext(path)
    partial = f"{root}.partial{ext}"
    start = time.perf_counter()
    try:
        FORMATS[name].write(baked, trace_sample, partial)
        os.replace(partial, path)
        errors = _check(FORMATS[name].load(path), inputs, reference)
    except Exception as exc:  # noqa: BLE001 - any exporter failure is this format's result
        if os.path.exists(partial):
            os.remove(partial)
        message = (str(exc).strip().splitlines() or [""])[0][:300]
        logger.error("%s export failed: %s: %s", name, type(exc).__name__, message)
        return {"file": None, "error": f"{type(exc).__name__}: {message}",
                "max_abs_error": float("inf"), "max_rel_error": float("inf")}
    return {"file": path, "bytes": os.path.getsize(path), "seconds": time.perf_counter() - start, **errors}


def _table(results: Dict[str, Dict[str, Any]], tolerance: float) -> str:
    from tabulate import tabulate

    rows = [[name, os.path.basename(r["file"]) if r["file"] else "-", f"{r['max_abs_error']:.2e}",
             f"{r['max_rel_error']:.2e}",
             "ok" if r["ok"] else f"FAILED ({r['error']})" if "error" in r else f"FAILED (> {tolerance:g})"]
            for name, r in results.items()]
    return tabulate(rows, headers=["format", "file", "max abs error", "max rel error", "check"], tablefmt="github")


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry: 0 when every file matches the model, 1 when one does not, 2 on bad input."""
    args = build_parser().parse_args(argv)
    from flexcore.checkpoint import CheckpointError
    from flexcore.data.base import DatasetError

    try:
        report = export(args)
    except (ConfigError, DatasetError, CheckpointError, FileNotFoundError) as exc:
        print(f"export_model: {exc}", file=sys.stderr)
        if isinstance(exc, DatasetError) and not args.fake_data:
            print("Add --fake-data to check the export on random inputs without the dataset's files.", file=sys.stderr)
        return 2
    failed = [name for name, r in report["formats"].items() if not r["ok"]]
    if failed:
        print(f"export_model: {', '.join(failed)} failed: an export error, or outputs that differ from the model "
              f"by more than --tolerance {args.tolerance:g} (max relative error; such files are kept for "
              f"inspection). See the table above and {report['output_dir']}/export.json.", file=sys.stderr)
        return 1
    return 0
