"""Fit one kernel net to one target (as the original's `ckernel_fitting/`): MSE, Adam, cosine or plateau, best weights kept.

The net alone is fitted, no convolution: it maps the relative-position grid ``(1, D, *grid)``
(``linspace(-1, 1, n)`` per dim, as every continuous conv samples it) to ``(1, C, *grid)``.

    net = KERNEL_NETS.build("MAGNet", 2, 1, input_scale=256.0)  # kernel fitting's bandwidth
    result = fit_kernel_net(net, make_target("gabor", freq=16.0), iterations=3000, lr=0.01)
    result.mse, result.psnr
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from flexcore.layers.functional import rel_positions

__all__ = ["FitResult", "fit_kernel_net", "psnr", "SCHEDULES"]

SCHEDULES = ("cosine", "plateau", "constant")


def psnr(target: torch.Tensor, prediction: torch.Tensor) -> float:
    """The original's PSNR: ``-10 log10(MSE(target, clamp(prediction, 0, 1)))`` in dB (peak 1).

    Infinite for a perfect fit.
    """
    mse = F.mse_loss(prediction.detach().clamp(0.0, 1.0), target).item()
    return math.inf if mse == 0.0 else -10.0 * math.log10(mse)


@dataclasses.dataclass
class FitResult:
    """What a fit achieved with the weights of its lowest training loss.

    Attributes:
        mse: the loss (MSE of the raw prediction) of the kept weights.
        psnr: :func:`psnr` of the kept weights' prediction.
        best_iteration: the iteration whose weights were kept (0-based).
        iterations: iterations run.
        parameters: trainable parameters of the net.
        seconds: wall time of the fit.
        prediction: ``(C, *grid)`` output of the kept weights.
        losses: the training loss of every iteration.
    """

    mse: float
    psnr: float
    best_iteration: int
    iterations: int
    parameters: int
    seconds: float
    prediction: torch.Tensor
    losses: List[float]

    def row(self) -> Dict[str, float]:
        return {"mse": self.mse, "psnr": self.psnr, "best_iteration": self.best_iteration,
                "iterations": self.iterations, "parameters": self.parameters, "seconds": round(self.seconds, 2)}


def _param_groups(net: nn.Module, lr: float, omega_0_lr_factor: float, weight_decay: float) -> List[dict]:
    # SIREN's learnable omega_0 trains faster, as in the original's fitting code (50x).
    omega = [p for n, p in net.named_parameters() if n.split(".")[-1] == "omega_0" and p.requires_grad]
    ids = {id(p) for p in omega}
    rest = [p for p in net.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": rest, "lr": lr, "weight_decay": weight_decay}]
    if omega:
        groups.append({"params": omega, "lr": lr * omega_0_lr_factor, "weight_decay": 0.0})
    return groups


def fit_kernel_net(
    net: nn.Module,
    target: torch.Tensor,
    iterations: int = 3000,
    lr: float = 0.01,
    schedule: str = "cosine",
    weight_decay: float = 0.0,
    omega_0_lr_factor: float = 50.0,
    plateau_factor: float = 0.5,
    plateau_patience: int = 100,
) -> FitResult:
    """Fit ``net`` to ``target`` by full-batch Adam on the MSE; keep the lowest-loss weights.

    Args:
        net: kernel net ``(1, D, *grid) -> (1, C, *grid)``; loaded with the kept weights on return.
        target: ``(C, *grid)`` values (``[0, 1]`` for the PSNR to be meaningful).
        iterations: optimisation steps.
        lr: Adam's learning rate.
        schedule: ``cosine`` (to 0 over ``iterations``), ``plateau`` (rate times
            ``plateau_factor`` after ``plateau_patience`` steps without a lower loss) or ``constant``.
        weight_decay: Adam's (L2) weight decay.
        omega_0_lr_factor: learning-rate factor of learnable ``omega_0`` parameters (SIREN).
        plateau_factor, plateau_patience: see ``schedule``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"Kernel fitting: unknown schedule {schedule!r}; use one of {SCHEDULES}.")
    if iterations < 1:
        raise ValueError(f"Kernel fitting: iterations must be >= 1, got {iterations}.")
    dim = target.dim() - 1
    device = next(net.parameters()).device
    target = target.to(device)
    positions = rel_positions(target.shape[1:], device=device)
    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    optimizer = torch.optim.Adam(_param_groups(net, lr, omega_0_lr_factor, weight_decay))
    if schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=iterations)
    elif schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=plateau_factor, patience=plateau_patience)
    else:
        scheduler = None

    net.train()
    start = time.perf_counter()
    best_loss, best_iter, best_state, best_out = math.inf, -1, None, None
    losses: List[float] = []
    for it in range(iterations):
        out = net(positions)[0]
        if out.shape != target.shape:
            raise ValueError(
                f"Kernel fitting: {type(net).__name__} returned {tuple(out.shape)} for a grid of "
                f"{tuple(target.shape[1:])} (dim {dim}); the target is {tuple(target.shape)}."
            )
        loss = F.mse_loss(out, target)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"Kernel fitting: {type(net).__name__} reached a non-finite loss at iteration {it}; "
                f"lower the learning rate (lr={lr})."
            )
        losses.append(value)
        if value < best_loss:  # the loss of the weights that produced `out`
            best_loss, best_iter = value, it
            best_state = copy.deepcopy(net.state_dict())
            best_out = out.detach().clone()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(value)
        elif scheduler is not None:
            scheduler.step()
    seconds = time.perf_counter() - start
    net.load_state_dict(best_state)
    return FitResult(
        mse=best_loss, psnr=psnr(target, best_out), best_iteration=best_iter, iterations=iterations,
        parameters=params, seconds=seconds, prediction=best_out.cpu(), losses=losses,
    )
