"""The training loop: ``TrainerBase`` runs steps, hooks do everything around them.

Shape of detectron2's loop. ``TrainerBase.train`` calls, in order,
``before_train``, then per iteration ``before_step``, ``run_step`` (which calls
``after_backward``), ``after_step``, and finally ``after_train`` (also after an error).
Each hook's methods run in registration order; :mod:`flexcore.engine.hooks` documents
the default order. ``HookBase`` itself lives in :mod:`flexcore.utils.hooks` so that
lower packages (layers, analysis) define hooks without importing the engine.
"""
from __future__ import annotations

import logging
import math
import time
import weakref
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn as nn

from flexcore.engine.accelerate import amp_dtype, autocast, disable_compile, is_compile_error
from flexcore.utils import comm
from flexcore.utils.events import EventStorage, get_event_storage
from flexcore.utils.hooks import HookBase, unwrap_model

__all__ = ["HookBase", "TrainerBase", "SimpleTrainer", "NonFiniteLossError", "unwrap_model"]

logger = logging.getLogger("flexcore")


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; training stops before the bad update is applied.

    Attributes:
        iteration: the iteration whose loss was not finite.
        losses: every loss term of that step, as floats.
    """

    def __init__(self, iteration: int, losses: Mapping[str, float], message: str = ""):
        self.iteration = iteration
        self.losses = dict(losses)
        terms = ", ".join(f"{k}={v:.4g}" for k, v in self.losses.items())
        super().__init__(
            message
            or f"Loss is not finite at iteration {iteration} ({terms}); training stopped before "
            "applying that update."
        )


class TrainerBase:
    """Runs ``run_step`` from ``start_iter`` to ``max_iter`` and calls the hooks around it.

    Attributes:
        iter: the current iteration; equals ``max_iter`` once training completed.
        start_iter, max_iter: the range of this call to :meth:`train`.
        completed: True once every iteration ran (hooks use it in ``after_train`` to tell
            a finished run from one that stopped on an error).
        storage: the :class:`EventStorage` of the running loop.
    """

    def __init__(self) -> None:
        self._hooks: List[HookBase] = []
        self.iter = 0
        self.start_iter = 0
        self.max_iter = 0
        self.completed = False
        self.storage: Optional[EventStorage] = None

    @property
    def hooks(self) -> List[HookBase]:
        return list(self._hooks)

    def register_hooks(self, hooks: Sequence[Optional[HookBase]]) -> None:
        """Append hooks (``None`` entries are skipped); they run in the order given."""
        for hook in hooks:
            if hook is None:
                continue
            if not isinstance(hook, HookBase):
                raise TypeError(f"{type(hook).__name__} is not a HookBase; hooks must subclass flexcore.engine.HookBase")
            # A weak proxy avoids a trainer <-> hook reference cycle.
            hook.trainer = weakref.proxy(self)
            self._hooks.append(hook)

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run iterations ``start_iter .. max_iter - 1``."""
        logger.info("Starting training from iteration %d (of %d)", start_iter, max_iter)
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        self.completed = False
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                self.iter = max_iter
                self.completed = True
            except NonFiniteLossError:
                raise  # a clear, expected stop: the caller reports it without a traceback
            except Exception:
                logger.exception("Exception during training at iteration %d:", self.iter)
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        for hook in self._hooks:
            hook.before_train()

    def after_train(self) -> None:
        self.storage.iter = self.iter
        for hook in self._hooks:
            hook.after_train()

    def before_step(self) -> None:
        self.storage.iter = self.iter
        for hook in self._hooks:
            hook.before_step()

    def after_backward(self) -> None:
        for hook in self._hooks:
            hook.after_backward()

    def after_step(self) -> None:
        for hook in self._hooks:
            hook.after_step()

    def run_step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        """Last completed iteration and hook states (for checkpoints); resume starts after it."""
        hooks = {}
        for hook in self._hooks:
            state = hook.state_dict()
            if state:
                name = type(hook).__qualname__
                if name in hooks:
                    logger.warning("Two hooks of type %s hold state; only the first is checkpointed.", name)
                    continue
                hooks[name] = state
        # After the loop `iter` is max_iter ("all done"); the last completed one is max_iter - 1.
        return {"iteration": min(self.iter, self.max_iter - 1), "hooks": hooks}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.iter = int(state["iteration"])
        for key, value in state.get("hooks", {}).items():
            for hook in self._hooks:
                if type(hook).__qualname__ == key:
                    hook.load_state_dict(value)
                    break
            else:
                logger.warning("Checkpoint holds state of hook %r, which this trainer does not have.", key)


class SimpleTrainer(TrainerBase):
    """One step = one batch: forward, task loss + regularisers, backward, clip, update.

    Args:
        model: the network (possibly DDP-wrapped), in training mode.
        data_loader: an iterable of ``(inputs, targets)`` batches, consumed without end
            (epochs are the sampler's business).
        optimizer: the optimiser over ``model``'s parameters.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (the task loss).
        regularizers: name -> ``callable(model) -> scalar``; each is added to the loss and
            logged as ``reg/<name>``. They receive the unwrapped model.
        grad_clip: clip threshold; 0 disables clipping.
        grad_clip_type: ``"norm"`` (total L2 norm, as the original) or ``"value"``.
        device: where batches are moved (default: the model's device).
        batch_metrics: ``fn(outputs, targets) -> dict`` of extra per-batch scalars
            (e.g. training accuracy; floats or 0-d tensors), computed without gradients.
        amp: mixed precision: None (float32), ``"bf16"`` or ``"fp16"`` (autocast around the
            forward and the loss; fp16 also scales the loss, ``torch.amp.GradScaler``).
        channels_last: feed 4-D inputs in channels-last memory (convert the model too, see
            :func:`flexcore.engine.accelerate.to_channels_last`).
        compile_fallback: the model was ``torch.compile``-d; if compiling fails in the first
            step, log why and train eagerly (False: raise).

    Host-device synchronisation: the step reads device values back once, for all logged
    scalars (loss terms, metrics; the NaN check), plus the gradient norm when clipping by
    norm. Layer-specific preparation runs in hooks: the ``RefreshCrops`` hook
    (:mod:`flexcore.layers.hooks`) computes every FlexConv's crop with one more read
    before the step.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Any,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        regularizers: Optional[Mapping[str, Callable[[nn.Module], torch.Tensor]]] = None,
        grad_clip: float = 0.0,
        grad_clip_type: str = "norm",
        device: Optional[torch.device] = None,
        batch_metrics: Optional[Callable[[torch.Tensor, torch.Tensor], Dict[str, Any]]] = None,
        amp: Optional[str] = None,
        channels_last: bool = False,
        compile_fallback: bool = True,
    ):
        super().__init__()
        if grad_clip_type not in ("norm", "value"):
            raise ValueError(f"grad_clip_type must be 'norm' or 'value', got {grad_clip_type!r}")
        model.train()
        self.model = model
        self.data_loader = data_loader
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.regularizers = dict(regularizers or {})
        self.grad_clip = float(grad_clip)
        self.grad_clip_type = grad_clip_type
        self.device = device if device is not None else next(model.parameters()).device
        self.batch_metrics = batch_metrics
        self.amp_dtype = amp_dtype(amp, self.device)
        self.grad_scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.channels_last = bool(channels_last)
        self.compile_fallback = compile_fallback
        # Checked once: the first step of a compiled model is where compilation happens.
        self._compile_pending = getattr(unwrap_model(model), "_compiled_call_impl", None) is not None
        self._data_iter = None

    @property
    def data_iter(self):
        if self._data_iter is None:
            self._data_iter = iter(self.data_loader)
        return self._data_iter

    def reset_data_iter(self) -> None:
        """Drop the running loader iterator (after the loader was rebuilt, e.g. on resume)."""
        self._data_iter = None

    def run_step(self) -> None:
        assert self.model.training, "SimpleTrainer.run_step: the model was left in eval mode"
        start = time.perf_counter()
        inputs, targets = next(self.data_iter)
        data_time = time.perf_counter() - start
        inputs = inputs.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        if self.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)

        if self._compile_pending:
            outputs, losses, total, values = self._first_compiled_step(inputs, targets)
        else:
            outputs, losses, total = self._forward(inputs, targets)
            values = self._read_scalars(losses, total, outputs, targets)
        values["data_time"] = data_time
        # One reduction per step (means over ranks); a NaN on any rank reaches every rank, so all stop together.
        values = comm.all_reduce_dict(values)
        if not math.isfinite(values.get("total_loss", values["loss"])):
            raise NonFiniteLossError(self.iter, {k: v for k, v in values.items() if k == "loss" or k.startswith("reg/")})

        if not self._compile_pending:
            self._backward(total)
        self._compile_pending = False
        self.after_backward()
        if self.grad_scaler is not None:
            self.grad_scaler.unscale_(self.optimizer)  # clip true gradients
        if self.grad_clip > 0:
            params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
            if self.grad_clip_type == "norm":
                # identical on every rank: DDP has averaged the gradients already
                values["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
            else:
                torch.nn.utils.clip_grad_value_(params, self.grad_clip)
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)  # skips the update if fp16 gradients overflowed
            self.grad_scaler.update()
        else:
            self.optimizer.step()

        get_event_storage().put_scalars(**values)

    def _forward(self, inputs: torch.Tensor, targets: torch.Tensor):
        """Forward, task loss and regularisers (under autocast when ``amp`` is set)."""
        with autocast(self.device, self.amp_dtype):
            outputs = self.model(inputs)
            losses = {"loss": self.loss_fn(outputs, targets)}
        bare = unwrap_model(self.model)
        for name, regularizer in self.regularizers.items():
            losses[f"reg/{name}"] = regularizer(bare)
        total = losses["loss"] if len(losses) == 1 else sum(losses.values())
        return outputs, losses, total

    def _backward(self, total: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        (total if self.grad_scaler is None else self.grad_scaler.scale(total)).backward()

    def _read_scalars(self, losses, total, outputs, targets) -> Dict[str, float]:
        """Loss terms and batch metrics as floats, with a single device-to-host copy."""
        tensors = {k: v.detach().float() for k, v in losses.items()}
        if len(losses) > 1:
            tensors["total_loss"] = total.detach().float()
        plain = {}
        if self.batch_metrics is not None:
            with torch.no_grad():
                for k, v in self.batch_metrics(outputs.detach(), targets).items():
                    if isinstance(v, torch.Tensor):
                        tensors[k] = v.detach().float().reshape(())
                    else:
                        plain[k] = float(v)
        keys = list(tensors)
        read = torch.stack([tensors[k].reshape(()) for k in keys]).tolist()
        return {**dict(zip(keys, read)), **plain}

    def _first_compiled_step(self, inputs, targets):
        """Forward and backward of a compiled model's first step; on a compile failure,
        explain, undo the compilation and run the step eagerly (or raise)."""
        try:
            outputs, losses, total = self._forward(inputs, targets)
            values = self._read_scalars(losses, total, outputs, targets)
            if math.isfinite(values.get("total_loss", values["loss"])):
                self._backward(total)
            return outputs, losses, total, values
        except Exception as exc:
            if not is_compile_error(exc):
                raise
            if not self.compile_fallback:
                raise RuntimeError(
                    f"torch.compile failed on the first step ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
                    "Train without it (Runtime.compile = False), try another Runtime.compile_mode, or set "
                    "Runtime.compile_fallback = True to fall back to eager execution."
                ) from exc
            logger.warning(
                "torch.compile failed on the first step (%s: %s); training continues without it "
                "(set Runtime.compile = False to skip the attempt).", type(exc).__name__, str(exc).splitlines()[0],
            )
            disable_compile(unwrap_model(self.model))
            self.optimizer.zero_grad(set_to_none=True)
            outputs, losses, total = self._forward(inputs, targets)
            values = self._read_scalars(losses, total, outputs, targets)
            if math.isfinite(values.get("total_loss", values["loss"])):
                self._backward(total)
            return outputs, losses, total, values
