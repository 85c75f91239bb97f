"""The export formats: what each writes, what it needs installed, how its file is read back."""
from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ["ExportFormat", "FORMATS", "missing_requirements", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'flexcore[export]'  (or: pip install onnx onnxscript onnxruntime)"

# Name of the model's input and output in the ONNX graph (what onnxruntime's feeds use).
ONNX_INPUT, ONNX_OUTPUT = "input", "output"


@dataclass(frozen=True)
class ExportFormat:
    name: str
    file_name: str
    requires: Tuple[str, ...]  # modules that writing and checking the file import
    write: Callable[[nn.Module, torch.Tensor, str], None]
    load: Callable[[str], Callable[[torch.Tensor], torch.Tensor]]
    description: str


def _batch_dim() -> torch.export.Dim:
    return torch.export.Dim("batch", min=1, max=2**16)


def _write_pt2(model: nn.Module, sample: torch.Tensor, path: str) -> None:
    program = torch.export.export(model, (sample,), dynamic_shapes=({0: _batch_dim()},))
    torch.export.save(program, path)


def _load_pt2(path: str):
    return torch.export.load(path).module()


def _write_torchscript(model: nn.Module, sample: torch.Tensor, path: str) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "deprecated": still the format C++/mobile runtimes load
        traced = torch.jit.trace(model, (sample,), check_trace=False)
    traced.save(path)


def _load_torchscript(path: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(path, map_location="cpu")


def _write_onnx(model: nn.Module, sample: torch.Tensor, path: str) -> None:
    # The dynamo-based exporter (torch.export -> ONNX via onnxscript): the legacy
    # TorchScript-based one is deprecated.
    program = torch.onnx.export(
        model, (sample,), dynamo=True, input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
        dynamic_shapes=({0: _batch_dim()},), verbose=False,
    )
    program.save(path)


def _load_onnx(path: str):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])

    def run(inputs: torch.Tensor) -> torch.Tensor:
        (output,) = session.run([ONNX_OUTPUT], {ONNX_INPUT: inputs.detach().cpu().numpy()})
        return torch.from_numpy(output)

    return run


FORMATS: Dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("pt2", "model.pt2", (), _write_pt2, _load_pt2,
                     "torch.export program (torch.export.load(...).module())"),
        ExportFormat("torchscript", "model.ts", (), _write_torchscript, _load_torchscript,
                     "TorchScript, traced (torch.jit.load)"),
        ExportFormat("onnx", "model.onnx", ("onnx", "onnxscript", "onnxruntime"), _write_onnx, _load_onnx,
                     "ONNX (onnxruntime.InferenceSession)"),
    )
}


def missing_requirements(names: Sequence[str]) -> Dict[str, List[str]]:
    """``{format: [modules not installed]}`` for the formats in ``names`` that cannot run here."""
    missing = {}
    for name in names:
        absent = [m for m in FORMATS[name].requires if importlib.util.find_spec(m) is None]
        if absent:
            missing[name] = absent
    return missing


def output_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, FORMATS[name].file_name)
