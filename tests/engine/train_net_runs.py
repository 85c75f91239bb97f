"""Real ``train_net`` processes for fault tests, without paying the import cost per process.

A server process (this file run as a script) imports flexcore once; for each command it
forks a child that runs what ``tools/train_net.py`` runs (``cli_main(argv)``) in its own
working directory and environment, with stdout and stderr in a file. The server can kill
the child with SIGKILL once its output shows a given line a given number of times, after a
delay: a real ``kill -9`` at a chosen point of a real training process. The parent never
runs a torch op, so the children start with untouched thread pools.

    with TrainNetServer() as server:
        result = server.run(["--config-file", ...], cwd=tmp, kill_after_lines=("iter: ", 3, 0.05))
        result.returncode   # -9 when the kill landed
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")


# The quick start (FlexNet on the embedded digits, 20 iterations an epoch) made small: periods
# in iterations, no kernel-report PNGs. Tests add the length and periods.
QUICK = ["--config-file", "quick/digits_flexnet.gin", "--gin", "Schedule.period_unit = 'iter'",
         "--gin", "Schedule.log_period = 5", "--gin", "Outputs.kernel_report = False"]


def quick(run_dir: str, *bindings: str, resume: bool = False) -> List[str]:
    """train_net arguments of a quick-start run in ``run_dir`` with extra gin ``bindings``."""
    argv = QUICK + ["--output-dir", str(run_dir)]
    for binding in bindings:
        argv += ["--gin", binding]
    return argv + (["--resume"] if resume else [])


def read_metrics(run_dir: str) -> List[Dict]:
    """metrics.json's lines (every line must parse)."""
    with open(os.path.join(run_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def tensorboard_scalars(run_dir: str) -> Dict[str, List[Tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard shows the run (purged steps left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def snapshot(run_dir: str, skip: Sequence[str] = ("log.txt", ".flexcore.lock")) -> Dict[str, bytes]:
    """Every file of the run dir (relative path -> bytes), except ``skip`` (the log and the lock
    file, which name each attempt and its holder: bookkeeping, not results)."""
    files = {}
    for folder, _, names in os.walk(run_dir):
        for name in names:
            rel = os.path.relpath(os.path.join(folder, name), run_dir)
            if rel not in skip:
                with open(os.path.join(folder, name), "rb") as f:
                    files[rel] = f.read()
    return files


class RunResult(NamedTuple):
    returncode: int  # negative: killed by that signal
    output: str


def train_net(argv: Sequence[str], cwd: str, env: Optional[Dict[str, str]] = None, timeout: float = 600) -> RunResult:
    """``python tools/train_net.py ARGV`` as its own process (no server)."""
    proc = subprocess.run([sys.executable, TRAIN_NET, *map(str, argv)], cwd=str(cwd), env={**os.environ, **(env or {})},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return RunResult(proc.returncode, proc.stdout)


class TrainNetServer:
    """Client of the forking server (a context manager)."""

    def __init__(self):
        self._proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, cwd=REPO)

    def run(self, argv: Sequence[str], cwd: str, env: Optional[Dict[str, str]] = None,
            kill_after_lines: Optional[Tuple[str, int, float]] = None, timeout: float = 300) -> RunResult:
        """Run ``train_net ARGV`` in a forked child; ``kill_after_lines=(text, count, delay_s)``:
        SIGKILL it ``delay_s`` after ``text`` appeared ``count`` times in its output."""
        cwd = str(cwd)
        out = os.path.join(cwd, f".train_net_output.{time.monotonic_ns()}.txt")
        request = {"argv": [str(a) for a in argv], "cwd": cwd, "env": env or {}, "out": out, "timeout": timeout,
                   "kill_after_lines": kill_after_lines}
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        reply = self._proc.stdout.readline()
        if not reply:
            raise RuntimeError("the train_net server died")
        with open(out) as f:
            output = f.read()
        os.remove(out)
        return RunResult(json.loads(reply)["returncode"], output)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:  # every run has returned: nothing is lost by stopping it
                print("train_net server: no exit 60 s after its input closed; killed", file=sys.stderr)
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> "TrainNetServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- the server -------------------------------------------------------------------------
def _child(request: Dict) -> None:
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.update(request["env"])
        fd = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        from flexcore.engine.cli import main as cli_main

        code = cli_main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - as an uncaught exception in train_net.py: traceback, status 1
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _count(path: str, text: str) -> int:
    try:
        with open(path, errors="replace") as f:
            return f.read().count(text)
    except OSError:
        return 0


def _supervise(pid: int, request: Dict) -> int:
    deadline = time.monotonic() + request["timeout"]
    kill = request["kill_after_lines"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -1000  # timed out
        if kill is not None and _count(request["out"], kill[0]) >= kill[1]:
            time.sleep(kill[2])
            os.kill(pid, signal.SIGKILL)
            kill = None
        time.sleep(0.005)


def _serve() -> None:
    # Imported once, shared by every child: flexcore, and what a run imports on its way
    # (torch.use_deterministic_algorithms imports torch._inductor; FLOPs need fvcore).
    import warnings

    import flexcore.engine.defaults  # noqa: F401
    import sklearn.datasets  # noqa: F401
    import torch._inductor  # noqa: F401
    import torch.utils.tensorboard  # noqa: F401

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import flexcore.analysis  # noqa: F401

    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        returncode = _supervise(pid, request)
        sys.stdout.write(json.dumps({"returncode": returncode}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
