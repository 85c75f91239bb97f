"""torch.distributed helpers that also work in a single process (no process group)."""
from __future__ import annotations

import os
from typing import Any, Dict, List

import torch
import torch.distributed as dist

__all__ = [
    "is_distributed",
    "get_world_size",
    "get_rank",
    "get_local_rank",
    "is_main_process",
    "synchronize",
    "on_main_process",
    "all_gather",
    "all_reduce_dict",
    "reduce_sum",
]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_local_rank() -> int:
    """Rank within this machine (LOCAL_RANK as torchrun/launch set it; 0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", 0)) if is_distributed() else 0


def is_main_process() -> bool:
    """Only the main process writes files (checkpoints, metrics, configs)."""
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes; no-op in a single process."""
    if get_world_size() > 1:
        dist.barrier()


def on_main_process(fn, *args, **kwargs):
    """Run ``fn`` on the main process only (downloads, unpacking); every process waits for it.

    An error on the main process is re-raised there after the barrier, so no rank hangs.
    """
    result, error = None, None
    if is_main_process():
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # re-raised below, after the others were released
            error = exc
    synchronize()
    if error is not None:
        raise error
    return result


def all_gather(obj: Any) -> List[Any]:
    """Gather any picklable object from every rank (list indexed by rank)."""
    if get_world_size() == 1:
        return [obj]
    out: List[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks (a new tensor; the input is unchanged)."""
    tensor = tensor.detach().clone()
    if get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_dict(values: Dict[str, float], average: bool = True) -> Dict[str, float]:
    """Reduce a dict of scalars over ranks (mean by default), same keys on every rank."""
    if get_world_size() == 1:
        return dict(values)
    keys = sorted(values)
    stacked = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    stacked = reduce_sum(stacked)
    if average:
        stacked /= get_world_size()
    return {k: float(v) for k, v in zip(keys, stacked.tolist())}
