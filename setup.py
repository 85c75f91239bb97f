#!/usr/bin/env python
"""flexcore: a gin-configured, plugin-based framework for continuous-kernel CNNs.

The top-level folders are the user's fixed layout; like detectron2's ``projects/``,
``registry/`` installs as ``flexcore.registry``, every ``projects/<Name>/<pkg>`` as
``flexcore.projects.<pkg>`` (its ``gin_configs/`` beside it as package data), and
``gin_configs/`` as ``flexcore.gin_configs``.
"""
import glob
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _version() -> str:
    with open(os.path.join(HERE, "flexcore", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip("\"'")
    raise RuntimeError("__version__ not found in flexcore/__init__.py")


def _project_packages():
    """``flexcore.projects.<pkg>`` -> ``projects/<Name>/<pkg>`` for each project package."""
    package_dir, packages, package_data = {}, [], {}
    for init in sorted(glob.glob(os.path.join("projects", "*", "*", "__init__.py"))):
        src = os.path.dirname(init)
        project = os.path.dirname(src)
        pkg = os.path.basename(src)
        if pkg == "tests":
            continue
        name = f"flexcore.projects.{pkg}"
        package_dir[name] = src
        packages.append(name)
        for sub in find_packages(src):
            package_dir[f"{name}.{sub}"] = os.path.join(src, *sub.split("."))
            packages.append(f"{name}.{sub}")
        gin_dir = os.path.join(project, "gin_configs")
        if os.path.isdir(gin_dir):
            package_dir[f"{name}.gin_configs"] = gin_dir
            packages.append(f"{name}.gin_configs")
            package_data[f"{name}.gin_configs"] = ["*.gin", "**/*.gin"]
    return package_dir, packages, package_data


project_dirs, project_pkgs, project_data = _project_packages()

# Ranges, not pins, so flexcore installs beside detectron2/timm/Lightning without swapping
# torch. The floor is the oldest release with every API the library calls
# (torch.amp.GradScaler(device) for fp16 training: torch 2.3); CI tests the newest through
# .ci/constraints.txt. The README's "Installation" lists the same range.
INSTALL_REQUIRES = [
    "torch>=2.3,<3",
    "torchvision>=0.18,<1",  # torchvision 0.18 is torch 2.3's release
    # The registry uses gin's private _REGISTRY and _LOCATION_PREFIXES: cap the minor series.
    "gin-config>=0.5.0,<0.6",
    "fvcore>=0.1.5.post20221221",
    "iopath>=0.1.9",
    "tabulate>=0.9",
    "submitit>=1.5",
    "numpy>=1.24",
    "tqdm>=4.60",
    "Pillow>=9.0",
    # embedded `digits` dataset for the quick start (ships inside scikit-learn)
    "scikit-learn>=1.2",
    # the FFT cost model's non-negative least-squares fit (tools/benchmark.py fft-calibrate)
    "scipy>=1.9",
    # the original code's config.yaml beside its checkpoints (checkpoint conversion)
    "PyYAML>=5.1",
    # kernel-size and kernel plots in analysis reports
    "matplotlib>=3.6",
    # TensorBoard event files written by the trainer
    "tensorboard>=2.12",
]

with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="flexcore",
    version=_version(),
    description="Continuous-kernel convolutions (CKConv, FlexConv) as a gin-configured, plugin-based framework",
    long_description=long_description,
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["flexcore", "flexcore.*"])
    + ["flexcore.registry", "flexcore.gin_configs"]
    + project_pkgs,
    package_dir={
        "flexcore.registry": "registry",
        "flexcore.gin_configs": "gin_configs",
        **project_dirs,
    },
    package_data={"flexcore.gin_configs": ["*.gin", "**/*.gin"], **project_data},
    include_package_data=False,
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest>=7.0", "pytest-timeout>=2.1"],
        # ONNX export (tools/export_model.py); onnxruntime checks the written file
        "export": ["onnx>=1.16", "onnxscript>=0.3", "onnxruntime>=1.18"],
    },
    entry_points={
        "console_scripts": [
            "flexcore-train=flexcore.cli:train_main",
            "flexcore-analyze=flexcore.cli:analyze_main",
            "flexcore-fit-kernel=flexcore.cli:fit_kernel_main",
            "flexcore-export=flexcore.cli:export_main",
            "flexcore-benchmark=flexcore.cli:benchmark_main",
            "flexcore-convert-checkpoint=flexcore.cli:convert_checkpoint_main",
            "flexcore-migrate-config=flexcore.cli:migrate_config_main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
