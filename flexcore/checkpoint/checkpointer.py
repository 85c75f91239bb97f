"""fvcore's Checkpointer with safe loading, atomic writes and clear mismatch reports.

- Loads with ``torch.load(weights_only=True)`` unless ``weights_only=False`` is passed
  explicitly (``--unsafe-load`` on the command line): a checkpoint cannot run code.
- Writes go to a temporary file that is renamed over the target once complete, and
  ``last_checkpoint`` is re-tagged only afterwards, so a process killed mid-save leaves
  the previous checkpoint loadable. ``save_dir`` is created (fvcore does not).
- A file that is truncated or not a checkpoint raises :class:`CheckpointError` naming it;
  a checkpoint whose keys or shapes do not fit the model raises
  :class:`CheckpointMismatchError` listing them (``strict=False`` logs the list and loads
  what fits, e.g. a pretrained backbone with a new head).
- Paths are iopath URIs (local files, ``file://``, ``http(s)://`` for reading, or any
  handler registered on :data:`flexcore.utils.file_io.path_manager`).
"""
from __future__ import annotations

import logging
import os
import pickle
import random
import re
import zipfile
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from fvcore.common.checkpoint import Checkpointer as _FvcoreCheckpointer
from fvcore.common.checkpoint import _strip_prefix_if_present

from flexcore.utils import comm
from flexcore.utils.faults import cut_write
from flexcore.utils.file_io import atomic_open, path_manager

__all__ = [
    "Checkpointer",
    "CheckpointError",
    "CheckpointMismatchError",
    "IncompatibleKeys",
    "get_rng_state",
    "set_rng_state",
]

logger = logging.getLogger("flexcore")

UNSAFE_HINT = (
    "If you trust the file, load it without safe loading: `--unsafe-load` on the command line "
    "or Checkpointer(..., weights_only=False)."
)


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, corrupt, or refused by safe loading."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's parameters do not fit the model (missing/unexpected keys, other shapes)."""


class IncompatibleKeys(NamedTuple):
    missing_keys: List[str]
    unexpected_keys: List[str]
    incorrect_shapes: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]

    def __bool__(self) -> bool:
        return bool(self.missing_keys or self.unexpected_keys or self.incorrect_shapes)

    def report(self, limit: int = 12) -> str:
        """Readable listing, ``limit`` entries per kind."""
        lines = []

        def section(title: str, items: Sequence[str]) -> None:
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines.extend(f"    {item}" for item in items[:limit])
                if len(items) > limit:
                    lines.append(f"    ... and {len(items) - limit} more")

        section("in the model but not in the checkpoint", self.missing_keys)
        section("in the checkpoint but not in the model", self.unexpected_keys)
        section(
            "shape differs (checkpoint -> model)",
            [f"{k}: {tuple(a)} -> {tuple(b)}" for k, a, b in self.incorrect_shapes],
        )
        return "\n".join(lines)


def state_dict_differences(state_dict: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor]) -> IncompatibleKeys:
    """How ``state_dict`` differs from ``model_state`` (a model's ``state_dict()``): keys and shapes."""
    shapes = [
        (k, tuple(v.shape), tuple(model_state[k].shape))
        for k, v in state_dict.items()
        if k in model_state and tuple(v.shape) != tuple(model_state[k].shape)
        and not isinstance(model_state[k], nn.parameter.UninitializedParameter)
    ]
    return IncompatibleKeys(
        missing_keys=[k for k in model_state if k not in state_dict],
        unexpected_keys=[k for k in state_dict if k not in model_state],
        incorrect_shapes=shapes,
    )


def get_rng_state() -> Dict[str, Any]:
    """Python, NumPy and torch (CPU + CUDA) generator states, as types safe loading accepts."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),  # (version, tuple of ints, gauss_next): plain types
        "numpy": {
            "bit_generator": str(np_state["bit_generator"]),
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state({
        "bit_generator": np_state["bit_generator"],
        "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
        "has_gauss": np_state["has_gauss"],
        "gauss": np_state["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _looks_original(state_dict: Dict[str, Any]) -> str:
    """A key only the original FlexConv code writes (its kernel nets live under ``Kernel.``,
    its masks in ``mask_params``), or '' if there is none."""
    for key in state_dict:
        if key.startswith("Kernel.") or ".Kernel." in key or key.split(".")[-1] == "mask_params":
            return key
    return ""


class Checkpointer(_FvcoreCheckpointer):
    """Save and load a model plus checkpointables (optimiser, scheduler, trainer state).

    Args:
        model: the model (a DDP/DataParallel wrapper is unwrapped).
        save_dir: folder (iopath URI) for checkpoints and ``last_checkpoint``.
        save_to_disk: write files at all; defaults to "this is the main process".
        weights_only: safe loading (default); False only for files you trust.
        checkpointables: objects with ``state_dict``/``load_state_dict``.
    """

    def __init__(self, model: nn.Module, save_dir: str = "", *, save_to_disk: Optional[bool] = None,
                 weights_only: bool = True, **checkpointables: Any):
        super().__init__(
            model, save_dir, save_to_disk=comm.is_main_process() if save_to_disk is None else save_to_disk,
            **checkpointables,
        )
        self.logger = logger
        self.path_manager = path_manager
        self.weights_only = weights_only

    # -- saving ---------------------------------------------------------------------
    def save(self, name: str, tag_last: bool = True, include_checkpointables: bool = True,
             **extra: Any) -> Optional[str]:
        """Write ``<save_dir>/<name>.pth`` atomically; re-tag ``last_checkpoint`` after it is complete.

        Args:
            name: file name without ``.pth``.
            tag_last: point ``last_checkpoint`` at it (False for e.g. ``model_best``).
            include_checkpointables: also save optimiser, schedule, ... (False: model only).
            extra: further picklable data (plain types/tensors, so safe loading reads it).
        Returns:
            the written path (None where this process does not write).
        """
        if not self.save_dir or not self.save_to_disk:
            return None
        data = {"model": self.model.state_dict()}
        if include_checkpointables:
            for key, obj in self.checkpointables.items():
                data[key] = obj.state_dict()
        data.update(extra)
        self.path_manager.mkdirs(self.save_dir)
        path = os.path.join(self.save_dir, f"{name}.pth")
        self.logger.debug("Saving checkpoint to %s", path)
        with atomic_open(path, "wb", self.path_manager) as f:
            torch.save(data, cut_write(path, f))
        if tag_last:
            self.tag_last_checkpoint(os.path.basename(path))
        return path

    def periodic_checkpoints(self, prefix: str = "model") -> List[str]:
        """Paths of the ``<prefix>_<iteration>.pth`` files in ``save_dir``, lowest iteration first."""
        if not self.save_dir or not self.path_manager.isdir(self.save_dir):
            return []
        pattern = re.compile(rf"{re.escape(prefix)}_(\d+)\.pth")
        found = sorted((int(m.group(1)), name) for name in self.path_manager.ls(self.save_dir)
                       for m in [pattern.fullmatch(name)] if m)
        return [os.path.join(self.save_dir, name) for _, name in found]

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        path = os.path.join(self.save_dir, "last_checkpoint")
        with atomic_open(path, "w", self.path_manager) as f:
            cut_write(path, f).write(last_filename_basename)

    # -- loading --------------------------------------------------------------------
    def _load_file(self, f: str) -> Dict[str, Any]:
        try:
            data = torch.load(f, map_location=torch.device("cpu"), weights_only=self.weights_only)
        except pickle.UnpicklingError as exc:
            # torch words it "Unsupported global: GLOBAL x.y" or "unsupported GLOBAL x.y ... is blocked".
            found = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)", str(exc), re.IGNORECASE)
            if self.weights_only and found:
                raise CheckpointError(
                    f"Safe loading refused {f}: it holds a Python object ({found.group(1)}) beyond tensors and "
                    f"plain types. {UNSAFE_HINT}"
                ) from exc
            raise CheckpointError(
                f"Checkpoint {f} cannot be read: it is corrupt or not a torch checkpoint "
                f"({str(exc).strip().splitlines()[-1][:200]})."
            ) from exc
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
            size = os.path.getsize(f) if os.path.exists(f) else 0
            raise CheckpointError(
                f"Checkpoint {f} ({size} bytes) cannot be read: it is truncated or not a torch checkpoint "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Use another "
                "checkpoint (the run's folder keeps the earlier ones) or re-create it."
            ) from exc
        if not isinstance(data, dict):
            raise CheckpointError(f"Checkpoint {f} holds a {type(data).__name__}, not a dict with a 'model' entry.")
        if "model" not in data:
            if data and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in data.values()):
                data = {"model": data}  # a bare state_dict (torch.save(model.state_dict()))
            else:
                raise CheckpointError(
                    f"Checkpoint {f} has no 'model' entry (keys: {sorted(data)[:10]}); expected a flexcore/"
                    "fvcore checkpoint or a bare state_dict. Original FlexConv files: "
                    "flexcore-convert-checkpoint (tools/convert_checkpoint.py) converts them."
                )
        return data

    def incompatible_keys(self, state_dict: Dict[str, torch.Tensor]) -> IncompatibleKeys:
        """How ``state_dict`` differs from the model's (keys and shapes)."""
        return state_dict_differences(state_dict, self.model.state_dict())

    def _load_model(self, checkpoint: Dict[str, Any], strict: bool = True, source: str = "") -> IncompatibleKeys:
        state_dict = checkpoint.pop("model")
        self._convert_ndarray_to_tensor(state_dict)
        _strip_prefix_if_present(state_dict, "module.")
        incompatible = self.incompatible_keys(state_dict)
        if incompatible and _looks_original(state_dict):
            raise CheckpointMismatchError(
                f"Checkpoint {source} was saved by the original FlexConv code (it has keys like "
                f"{_looks_original(state_dict)!r}), not by flexcore. Convert it first: python "
                f"tools/convert_checkpoint.py {source} --horizon 33 (the conv grid; or --original-config "
                "<its config.yaml>), then add --gin-file <output>/model.gin --weights <output>/model_final.pth "
                "(docs/checkpoints-original.md)."
            )
        if incompatible:
            message = f"Checkpoint {source} does not match the model ({type(self.model).__name__}):\n{incompatible.report()}"
            if strict:
                raise CheckpointMismatchError(
                    message + "\nIs it a checkpoint of another model or config? To initialise from it anyway, "
                    "loading what fits, set Checkpoints.init_strict = False (pretrained weights only)."
                )
            self.logger.warning("%s\nLoading the %d matching tensors only.", message,
                                len(state_dict) - len(incompatible.unexpected_keys) - len(incompatible.incorrect_shapes))
        for key, _, _ in incompatible.incorrect_shapes:
            state_dict.pop(key)
        self.model.load_state_dict(state_dict, strict=False)
        return incompatible

    def load(self, path: str, checkpointables: Optional[List[str]] = None, strict: bool = True) -> Dict[str, Any]:
        """Load ``path`` into the model and the named checkpointables (all by default).

        Args:
            path: file or iopath URI; empty = nothing to load.
            checkpointables: names to restore besides the model (``[]``: the model only).
            strict: a key or shape mismatch raises :class:`CheckpointMismatchError`;
                False logs the report and loads what fits.
        Returns:
            the checkpoint's remaining entries (e.g. ``iteration``).
        """
        if not path:
            self.logger.info("No checkpoint given: the model keeps its initialisation.")
            return {}
        self.logger.info("Loading checkpoint %s", path)
        local = path
        if not os.path.isfile(local):
            try:
                local = self.path_manager.get_local_path(path)
            except Exception as exc:  # noqa: BLE001 - any handler error means "not reachable"
                raise CheckpointError(f"Checkpoint {path} cannot be opened: {exc}") from exc
            if not os.path.isfile(local):
                raise CheckpointError(
                    f"Checkpoint {path} not found; pass an existing file or iopath URI (a run's folder holds "
                    "model_final.pth, model_best.pth and model_NNNNNNN.pth)."
                )
        checkpoint = self._load_file(local)
        self._load_model(checkpoint, strict=strict, source=path)
        wanted = list(self.checkpointables) if checkpointables is None else list(checkpointables)
        for key in wanted:
            if key in checkpoint:
                self.checkpointables[key].load_state_dict(checkpoint.pop(key))
            else:
                self.logger.warning("Checkpoint %s has no %r state; it keeps its initial state.", path, key)
        return checkpoint

    def resume_or_load(self, path: str, *, resume: bool = True, strict: bool = True) -> Dict[str, Any]:
        """Resume from ``last_checkpoint`` if asked and present, else load only the model from ``path``."""
        if resume and self.has_checkpoint():
            return self.load(self.get_checkpoint_file())
        return self.load(path, checkpointables=[], strict=strict)

    def get_checkpoint_file(self) -> str:
        """The file ``last_checkpoint`` names ('' if none); a dangling tag is an error."""
        tag = os.path.join(self.save_dir, "last_checkpoint")
        try:
            with self.path_manager.open(tag, "r") as f:
                name = f.read().strip()
        except OSError:
            return ""
        if not name:
            raise CheckpointError(
                f"{tag} is empty: it should name the run's last checkpoint (e.g. model_0000009.pth). Write the "
                "name of one of the folder's checkpoints into it, or delete it to start from scratch."
            )
        path = os.path.join(self.save_dir, name)
        if not self.path_manager.exists(path):
            raise CheckpointError(f"{tag} names {name!r}, but {path} does not exist.")
        return path
