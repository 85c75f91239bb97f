"""Run by the export tests as ``python -I -S`` with only torch's (numpy's, onnxruntime's)
site-packages on sys.path: loads each exported file as a user without flexcore would.

argv: <export dir> <inputs .npz> <results .npz>; prints one JSON line.
"""
import importlib.util
import json
import os
import sys

flexcore_found = importlib.util.find_spec("flexcore") is not None
if flexcore_found:  # a non-editable install beside torch: make every import of it fail
    sys.modules["flexcore"] = None

import numpy as np  # noqa: E402
import torch  # noqa: E402

export_dir, inputs_path, results_path = sys.argv[1:4]
data = np.load(inputs_path)
inputs, labels = torch.from_numpy(data["inputs"]), data["labels"]
logits = {}

program = torch.export.load(os.path.join(export_dir, "model.pt2")).module()
with torch.no_grad():
    logits["pt2"] = program(inputs).numpy()

scripted = torch.jit.load(os.path.join(export_dir, "model.ts"))
with torch.no_grad():
    logits["torchscript"] = scripted(inputs).numpy()

onnx_path = os.path.join(export_dir, "model.onnx")
if os.path.exists(onnx_path) and importlib.util.find_spec("onnxruntime") is not None:
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    (logits["onnx"],) = session.run(["output"], {"input": inputs.numpy()})

np.savez(results_path, **logits)
accuracy = {name: float((out.argmax(1) == labels).mean() * 100) for name, out in logits.items()}
print(json.dumps({"accuracy": accuracy, "flexcore_importable": "flexcore" in sys.modules and sys.modules["flexcore"]
                  is not None, "flexcore_on_path": flexcore_found}))
