"""Contract checkers: every file-free built-in passes; each kind of violation is named with its fix."""
import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from flexcore.data import DatasetMetadata, check_dataset
from flexcore.layers.check import check_kernel_net, check_mask
from flexcore.registry import KERNEL_NETS, MASKS, import_builtins
from flexcore.registry.__main__ import main
from flexcore.registry.checks import ContractError

import_builtins()
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "examples", "sine_waves.py")

# Built-in datasets that need no files, with small sizes where they are generated.
FILE_FREE_DATASETS = [
    ("Digits", {}),
    ("SDigits", {}),
    ("AddingProblem", {"seq_length": 32, "train_samples": 16, "val_samples": 8, "test_samples": 8}),
    ("CopyMemory", {"seq_length": 20, "memory_size": 4, "train_samples": 16, "val_samples": 8, "test_samples": 8}),
]


@pytest.mark.parametrize("name, options", FILE_FREE_DATASETS, ids=[n for n, _ in FILE_FREE_DATASETS])
def test_file_free_builtin_datasets_hold_the_contract(name, options):
    report = check_dataset(name, **options)
    assert "val: the same samples on every build" in report.passed
    assert any(line.startswith("val: input float32") for line in report.passed)


def test_every_other_builtin_dataset_needs_files(tmp_path):
    """A new file-free built-in must join FILE_FREE_DATASETS (and so be checked)."""
    from flexcore.data import MissingDatasetError
    from flexcore.registry import DATASETS

    file_free = {name for name, _ in FILE_FREE_DATASETS}
    for name, factory in DATASETS:
        builtin = DATASETS.get_raw(name).__module__.startswith("flexcore.data.")  # not a test's plugin
        if builtin and name not in file_free:
            with pytest.raises(MissingDatasetError):
                factory(root=str(tmp_path), split="test")


@pytest.mark.parametrize("name", sorted(n for n, _ in KERNEL_NETS))
def test_builtin_kernel_nets_hold_the_contract(name):
    report = check_kernel_net(name)
    assert any("every trainable parameter gets a gradient" in line for line in report.passed)
    assert {f"dim={d}" in " ".join(report.passed) for d in (1, 2, 3)} == {True}


@pytest.mark.parametrize("name", sorted(n for n, _ in MASKS))
def test_builtin_masks_hold_the_contract(name):
    report = check_mask(name)
    assert any("causal=True): crop_bounds" in line for line in report.passed)


def test_mlp_normalising_over_the_grid_is_noted_not_failed():
    assert check_kernel_net("MLP", norm="BatchNorm").notes
    assert not check_kernel_net("MLP", norm=None).notes


class _BrokenData(Dataset):
    """Returns numpy inputs, an out-of-range label and metadata that disagrees with describe()."""

    def __init__(self, root=None, split="train"):
        self.metadata = DatasetMetadata("Broken", in_channels=2, num_classes=3, shape=(8,))

    @classmethod
    def describe(cls, **_ignored):
        return DatasetMetadata("Broken", in_channels=1, num_classes=3, shape=(8,), split_sizes={"train": 99})

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return np.zeros((2, 8), np.float32), 7


def test_dataset_violations_are_all_listed_with_fixes():
    with pytest.raises(ContractError) as err:
        check_dataset(_BrokenData)
    message = str(err.value)
    assert "_BrokenData breaks the datasets contract" in message
    assert "train: .metadata and describe() differ in ['in_channels']" in message
    assert "len(dataset) is 4, describe() says 99" in message
    assert "input is ndarray" in message and "Fix: return the input as a float32 tensor" in message
    assert "split='bogus' was accepted" in message


class _UnusedParamNet(nn.Module):
    def __init__(self, dim, out_channels):
        super().__init__()
        self.linear = nn.Linear(dim, out_channels)
        self.spare = nn.Parameter(torch.ones(1))  # never used: DDP would refuse it

    def forward(self, positions):
        return self.linear(positions.movedim(1, -1)).movedim(-1, 1)


class _WrongShapeNet(nn.Module):
    def __init__(self, dim, out_channels):
        super().__init__()
        self.out_channels = out_channels

    def forward(self, positions):
        return positions.new_zeros(1, self.out_channels, positions.shape[-1])  # forgets the other dims


class _RigidMask(nn.Module):
    def __init__(self, dim, causal=False):
        super().__init__()
        if dim != 1:
            raise ValueError("only 1-D")

    def forward(self, positions):
        return torch.ones(1, 1, *positions.shape[2:])


def test_kernel_net_and_mask_violations_name_the_fix():
    with pytest.raises(ContractError, match=r"no gradient reaches \['spare'\].*DDP fails on unused parameters"):
        check_kernel_net(_UnusedParamNet)
    with pytest.raises(ContractError) as err:
        check_kernel_net(_WrongShapeNet)
    assert "dim=2, out_channels=6): output is (1, 6, 5), expected (1, 6, 7, 5)" in str(err.value)
    assert "dim=1" not in str(err.value)
    with pytest.raises(ContractError) as err:
        check_mask(_RigidMask)
    message = str(err.value)
    assert "_RigidMask(dim=2, causal=False) raised ValueError: only 1-D" in message
    assert "for dim 1, 2 and 3" in message and "crop_bounds(positions) raised AttributeError" in message


def test_cli_checks_the_example_plugin_from_a_folder_outside_the_repo(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "sine_waves.py")
    run = subprocess.run(
        [sys.executable, "-m", "flexcore.registry", "--plugin", "sine_waves.py", "check", "datasets", "SineWaves",
         "-o", "length=64", "-v"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "SineWaves: the datasets contract holds" in run.stdout and "ok  val: input float32 (1, 64)" in run.stdout


def test_cli_plugin_before_the_subcommand_and_failing_checks(tmp_path, capsys):
    cls = f"CheckNet{uuid.uuid4().hex[:8]}"
    path = tmp_path / "check_plugin.py"
    path.write_text(textwrap.dedent(f"""
        import torch.nn as nn
        from flexcore.registry import KERNEL_NETS

        @KERNEL_NETS.register()
        class {cls}(nn.Module):
            '''Returns its input: the wrong number of channels.'''
            def __init__(self, dim, out_channels):
                super().__init__()

            def forward(self, positions):
                return positions
    """))
    assert main(["--plugin", str(path), "list", "kernel_nets", f"*{cls}*"]) == 0
    assert cls in capsys.readouterr().out
    assert main(["check", "kernel_nets", cls, "--plugin", str(path)]) == 1
    assert "expected (1, 6, 9)" in capsys.readouterr().err
    assert main(["check", "masks", "GausianMask"]) == 2
    assert "Did you mean 'GaussianMask'" in capsys.readouterr().err
    assert main(["check", "datasets", "Digits", "-o", "bad option"]) == 2
    assert "write KEY=VALUE" in capsys.readouterr().err
