"""Console scripts: each name maps to one module's ``main(argv) -> int``; the ``tools/`` scripts
call the same functions (docs/cli.md). Each import waits for its command, so one tool never
loads another's dependencies.
"""
from typing import Optional, Sequence

Argv = Optional[Sequence[str]]

# console script -> (module, tools/ script); setup.py installs the functions below under these names.
COMMANDS = {
    "flexcore-train": ("flexcore.engine.cli", "train_net.py"),
    "flexcore-analyze": ("flexcore.analysis.cli", "analyze_model.py"),
    "flexcore-fit-kernel": ("flexcore.fitting.experiment", "fit_kernel.py"),
    "flexcore-export": ("flexcore.export.cli", "export_model.py"),
    "flexcore-convert-checkpoint": ("flexcore.compat.original.convert", "convert_checkpoint.py"),
    "flexcore-benchmark": ("flexcore.benchmarks.harness", "benchmark.py"),
    "flexcore-migrate-config": ("flexcore.engine.migrate_config", "migrate_config.py"),
}


def train_main(argv: Argv = None) -> int:
    from flexcore.engine.cli import main

    return main(argv)


def analyze_main(argv: Argv = None) -> int:
    from flexcore.analysis.cli import main

    return main(argv)


def fit_kernel_main(argv: Argv = None) -> int:
    from flexcore.fitting.experiment import main

    return main(argv)


def export_main(argv: Argv = None) -> int:
    from flexcore.export.cli import main

    return main(argv)


def convert_checkpoint_main(argv: Argv = None) -> int:
    from flexcore.compat.original.convert import main

    return main(argv)


def benchmark_main(argv: Argv = None) -> int:
    from flexcore.benchmarks.harness import main

    return main(argv)


def migrate_config_main(argv: Argv = None) -> int:
    from flexcore.engine.migrate_config import main

    return main(argv)
