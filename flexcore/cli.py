"""Console entry points (``flexcore-train`` ...); the ``tools/`` scripts call the same code."""
import sys


def train_main() -> None:
    from flexcore.engine.defaults import cli_entry

    sys.exit(cli_entry())


def analyze_main() -> None:
    from flexcore.analysis.cli import main

    sys.exit(main())


def fit_kernel_main() -> None:
    from flexcore.fitting import main

    sys.exit(main())


def benchmark_main() -> None:
    from flexcore.benchmarks.harness import main

    sys.exit(main())


def convert_checkpoint_main() -> None:
    from flexcore.compat.original.convert import main

    sys.exit(main())
