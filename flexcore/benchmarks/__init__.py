"""Speed benchmarks: the timing harness (``harness``) and its suites, one module each.

``python tools/benchmark.py <suite>`` or ``flexcore-benchmark <suite>``. A suite registers
itself with :func:`~flexcore.benchmarks.harness.register_benchmark`; ``BENCHMARKS`` imports
the built-in suites on first lookup.
"""
from .harness import BENCHMARKS, Check, Report, Stats, Table, register_benchmark, time_round_robin

__all__ = ["BENCHMARKS", "Check", "Report", "Stats", "Table", "register_benchmark", "time_round_robin"]
