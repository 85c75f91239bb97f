"""Benchmark harness behind ``tools/benchmark.py``: timing, tables, JSON, subcommand registry.

Each subcommand is a function registered with :func:`register_benchmark`; it receives the
parsed arguments and returns a :class:`Report` (tables plus target checks). Every figure
is a median over repeated runs with its spread (interquartile range); the variants
compared in one table are timed round-robin in the same run, so load on a shared machine
hits them alike and their ratios stay meaningful.

    python tools/benchmark.py layers --json output/benchmark/layers.json
    python tools/benchmark.py fft --threads 2
    python tools/benchmark.py quickstart       # the README's first command: accuracy, wall and CPU time
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import torch

from flexcore.layers.fft_calibration import device_name
from flexcore.utils.timing import time_interleaved

__all__ = [
    "Stats",
    "Table",
    "Check",
    "Report",
    "BENCHMARKS",
    "BenchmarkRegistry",
    "register_benchmark",
    "time_round_robin",
    "environment",
    "main",
]


@dataclasses.dataclass
class Stats:
    """Wall-clock statistics of one timed variant, in milliseconds."""

    median: float
    q1: float
    q3: float
    runs: int

    @property
    def spread(self) -> str:
        return f"{self.q1:.1f}-{self.q3:.1f}"

    def to_dict(self) -> Dict[str, float]:
        return dataclasses.asdict(self)


def _stats(samples: Sequence[float]) -> Stats:
    ms = sorted(1e3 * s for s in samples)
    if len(ms) >= 4:
        q1, _, q3 = statistics.quantiles(ms, n=4)
    else:
        q1, q3 = ms[0], ms[-1]
    return Stats(statistics.median(ms), q1, q3, len(ms))


_MIN_SAMPLE_S = 0.1  # set from --min-sample
# Sample clock (--clock): wall time, or this process's CPU time (all its threads), which a
# machine shared with other jobs inflates far less; with --threads 1 it approximates the
# wall time of an idle machine.
_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_CLOCK = _CLOCKS["wall"]


def time_round_robin(
    fns: Dict[str, Callable[[], Any]],
    repeat: int = 5,
    warmup: int = 1,
    budget_s: float = 60.0,
    min_sample_s: Optional[float] = None,
) -> Dict[str, Stats]:
    """Time each function ``repeat`` times, interleaved (a, b, a, b, ...), per call.

    A sample runs a function back to back until ``min_sample_s`` has passed (the count
    fixed in the warm-up), so millisecond-scale calls are not dominated by timer and
    scheduler noise. Stops early (at least 2 rounds; 1 if a single round exceeds twice
    the budget) once ``budget_s`` seconds have been spent, so slow variants (a 65x65 direct
    conv) stay affordable. The timer is :func:`flexcore.utils.timing.time_interleaved`.
    """
    samples = time_interleaved(
        list(fns.values()),
        rounds=repeat,
        min_sample_s=_MIN_SAMPLE_S if min_sample_s is None else min_sample_s,
        warmup=warmup,
        budget_s=budget_s,
        clock=_CLOCK,
        device_type="cuda" if torch.cuda.is_available() else "cpu",
    )
    return {name: _stats(s) for name, s in zip(fns, samples)}


@dataclasses.dataclass
class Table:
    title: str
    headers: List[str]
    rows: List[List[Any]] = dataclasses.field(default_factory=list)
    note: str = ""

    def render(self) -> str:
        from tabulate import tabulate

        text = f"\n## {self.title}\n" + tabulate(self.rows, headers=self.headers, tablefmt="github", floatfmt=".3g")
        return text + (f"\n{self.note}" if self.note else "")


@dataclasses.dataclass
class Check:
    """A speed or accuracy target: ``value <= limit``."""

    name: str
    value: float
    limit: float

    @property
    def ok(self) -> bool:
        return self.value <= self.limit

    def render(self) -> str:
        return f"[{'PASS' if self.ok else 'MISS'}] {self.name}: {self.value:.3g} (target <= {self.limit:g})"


@dataclasses.dataclass
class Report:
    tables: List[Table] = dataclasses.field(default_factory=list)
    checks: List[Check] = dataclasses.field(default_factory=list)
    data: Dict[str, Any] = dataclasses.field(default_factory=dict)


class BenchmarkRegistry(Mapping):
    """Subcommand name -> ``{"fn", "help", "add_arguments"}``; fills on first lookup.

    Like the component registries, the built-in suites are imported the first time anyone
    reads the registry (``"layers" in BENCHMARKS``, iteration, indexing), so a lookup never
    depends on which module happened to be imported before.
    """

    def __init__(self, builtins: Sequence[str]) -> None:
        self.builtins = tuple(builtins)
        self._entries: Dict[str, Dict[str, Any]] = {}
        self._loaded = False
        self._loading = False

    def add(self, name: str, entry: Dict[str, Any]) -> None:
        existing = self._entries.get(name)
        if existing is not None and existing["fn"] is not entry["fn"]:
            raise ValueError(
                f"benchmark {name!r} is registered twice: {existing['fn'].__module__}.{existing['fn'].__qualname__} "
                f"and {entry['fn'].__module__}.{entry['fn'].__qualname__}; rename one of them"
            )
        self._entries[name] = entry

    def _ensure_builtins(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True  # a suite importing the harness must not recurse into here
        try:
            for module in self.builtins:
                importlib.import_module(module)
            self._loaded = True
        finally:
            self._loading = False

    def __getitem__(self, name: str) -> Dict[str, Any]:
        self._ensure_builtins()
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        self._ensure_builtins()
        return iter(self._entries)

    def __len__(self) -> int:
        self._ensure_builtins()
        return len(self._entries)


BENCHMARKS = BenchmarkRegistry(
    builtins=[
        "flexcore.benchmarks.layers",
        "flexcore.benchmarks.models",
        "flexcore.benchmarks.sequences",
        "flexcore.benchmarks.quick_start",
        "flexcore.benchmarks.accelerators",
        "flexcore.benchmarks.convergence",
        "flexcore.benchmarks.gpu",
    ]
)


def register_benchmark(name: str, help: str, add_arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None):
    """Register ``fn(args) -> Report`` as subcommand ``name`` of ``tools/benchmark.py``."""

    def deco(fn: Callable[[argparse.Namespace], Report]):
        BENCHMARKS.add(name, {"fn": fn, "help": help, "add_arguments": add_arguments})
        return fn

    return deco


def environment() -> Dict[str, Any]:
    """What the numbers depend on: versions, threads, device, processor, date, machine load."""
    env = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": device_name("cpu"),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        env["load_avg"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every OS
        pass
    return env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Speed benchmarks of flexcore (medians over repeated runs, ratios measured in the same run).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, spec in BENCHMARKS.items():
        p = sub.add_parser(name, help=spec["help"], description=spec["help"])
        p.add_argument("--repeat", type=int, default=5, help="timed runs per variant (median reported)")
        p.add_argument("--warmup", type=int, default=1, help="untimed runs first")
        p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
        p.add_argument("--budget", type=float, default=60.0, help="seconds per table row before stopping early")
        p.add_argument("--min-sample", type=float, default=0.1, help="seconds a timed sample lasts (calls repeated)")
        p.add_argument("--clock", choices=sorted(_CLOCKS), default="wall",
                       help="wall time, or process CPU time (steadier on a loaded machine; use with --threads 1)")
        p.add_argument("--quick", action="store_true", help="fewer, smaller cases (a smoke run)")
        p.add_argument("--device", default="cpu", help="cpu or cuda")
        p.add_argument("--json", default=None, help=f"write results here (default output/benchmark/{name}.json)")
        p.add_argument("--markdown", default=None, help="also write the printed tables and targets to this file")
        if spec["add_arguments"]:
            spec["add_arguments"](p)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    global _MIN_SAMPLE_S, _CLOCK
    _MIN_SAMPLE_S = args.min_sample
    _CLOCK = _CLOCKS[args.clock]
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmark: --device cuda asked for, but no CUDA device is available")
    env_before = environment()
    report: Report = BENCHMARKS[args.command]["fn"](args)
    env = dict(env_before, load_avg_after=environment().get("load_avg"))
    env["clock"] = args.clock
    text = render_report(args.command, env, report)
    print(text)
    path = args.json or os.path.join("output", "benchmark", f"{args.command}.json")
    payload = {
        "benchmark": args.command,
        "args": {k: v for k, v in vars(args).items() if k != "command"},
        "environment": env,
        "tables": [dataclasses.asdict(t) for t in report.tables],
        "checks": [dict(dataclasses.asdict(c), ok=c.ok) for c in report.checks],
        "data": report.data,
    }
    _write_atomic(path, json.dumps(payload, indent=1, default=str))
    print(f"\nwrote {path}")
    if args.markdown:
        _write_atomic(args.markdown, text + "\n")
        print(f"wrote {args.markdown}")
    return 0


def render_report(command: str, env: Dict[str, Any], report: Report) -> str:
    """The report as markdown: a header naming the machine, the tables, the targets."""
    lines = [f"# benchmark {command}: torch {env['torch']}, {env['threads']} threads, {env['device']}, "
             f"CPU {env.get('cpu')}, {env.get('date_utc')}, {env.get('clock')} clock, "
             f"load {env.get('load_avg')} -> {env.get('load_avg_after')}"]
    lines += [table.render() for table in report.tables]
    if report.checks:
        lines.append("\n## Targets")
        lines += [check.render() for check in report.checks]
    return "\n".join(lines)


def _write_atomic(path: str, text: str) -> None:
    """Write through a temporary file: never leaves a half-written result."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
