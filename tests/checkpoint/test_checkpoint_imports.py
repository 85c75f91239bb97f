"""The checkpointer knows no model: importing it loads no layers, models, data or registry."""
import subprocess
import sys


def test_checkpoint_package_loads_nothing_model_specific():
    code = (
        "import sys, flexcore.checkpoint; "
        "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['flexcore', 'layers'], ['flexcore', 'modeling'], ['flexcore', 'data'], ['flexcore', 'registry'], "
        "['flexcore', 'compat'])))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
