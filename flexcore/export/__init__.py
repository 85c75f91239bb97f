"""Export a trained model out of flexcore: torch.export, TorchScript and ONNX files, checked."""
from .cli import export, main, max_errors
from .formats import FORMATS, INSTALL_HINT, missing_requirements
from .prepare import direct_conv, prepare_for_export

__all__ = ["FORMATS", "INSTALL_HINT", "direct_conv", "export", "main", "max_errors", "missing_requirements",
           "prepare_for_export"]
