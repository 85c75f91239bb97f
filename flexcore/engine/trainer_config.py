"""The ``Trainer``'s settings in six small gin configurables, checked as they are built.

    Data.dataset = 'CIFAR10'          Solver.lr = 0.01            Schedule.epochs = 350
    Runtime.device = 'cuda'           Checkpoints.max_to_keep = 3    Outputs.tensorboard = True

Each group is a frozen dataclass: ``Trainer`` builds the ones it is not given (gin fills
them), and a keyword of ``Trainer`` named after any field overrides that field
(``Trainer(out, max_iter=3, fake_data=True)``; the command line and ``CrossResolution``
pass theirs this way). The flat gin names of earlier releases (``Trainer.epochs = 10``)
still apply, with a warning that names the new binding (docs/training.md, "Renamed
settings").
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Union

import gin
import torch
import torch.nn as nn

from flexcore.config import ConfigError, binding_origins
from flexcore.registry import DATASETS, UnknownNameError
from flexcore.solver import build_param_groups
from flexcore.utils import comm

__all__ = [
    "Data", "Solver", "Schedule", "Runtime", "Checkpoints", "Outputs", "TrainerConfig",
    "assemble_config", "check_bindings", "configured_value", "resolve_device", "build_regularizers",
]

logger = logging.getLogger("flexcore")


def _fail(group: str, name: str, requirement: str, value: Any, example: Any) -> None:
    raise ValueError(f"{group}.{name} must be {requirement}, got {value!r} (e.g. --gin '{group}.{name} = {example}').")


def _check_counts(group: str, minimum: int, **values: Any) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            _fail(group, name, f"an integer >= {minimum}", value, max(minimum, 1))


@gin.configurable(module="engine")
@dataclasses.dataclass(frozen=True)
class Data:
    """What the run reads.

    Args:
        dataset: registered dataset name. Per-split options go through gin scopes
            ``train/``, ``val/``, ``test/`` (``train/build_dataset.augment = ...``).
        dataset_options: options for every split's dataset (e.g. ``{'resolution': 16}``).
        batch_size: the global batch (split evenly over DDP processes).
        eval_batch_size: batch for evaluation (None: ``batch_size``).
        num_workers: loader worker processes per rank.
        drop_last: drop each epoch's last incomplete training batch.
        val_split: split for model selection (None: on ``test_split``, as the original's image runs).
        test_split: split for the final test (None: no test).
        fake_data: random data of the dataset's shape (``--fake-data``).
    """

    dataset: str = gin.REQUIRED
    dataset_options: Optional[Mapping[str, Any]] = None
    batch_size: int = 64
    eval_batch_size: Optional[int] = None
    num_workers: int = 0
    drop_last: bool = False
    val_split: Optional[str] = "val"
    test_split: Optional[str] = "test"
    fake_data: bool = False

    def __post_init__(self) -> None:
        _check_counts("Data", 1, batch_size=self.batch_size)
        if self.eval_batch_size is not None:
            _check_counts("Data", 1, eval_batch_size=self.eval_batch_size)
        _check_counts("Data", 0, num_workers=self.num_workers)

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or self.batch_size


@gin.configurable(module="engine")
@dataclasses.dataclass(frozen=True)
class Solver:
    """How the parameters move.

    Args:
        lr: base learning rate (groups scale it by their ``lr_factor``).
        optimizer: ``OPTIMIZERS`` factory ``(param_groups, lr) -> Optimizer`` (None: ``@Adam``).
        lr_schedule: ``LR_SCHEDULES`` factory ``(optimizer, max_iter, iters_per_epoch)``
            (None: ``@Constant``; e.g. ``@Cosine``).
        param_groups: ``(model) -> groups`` (``build_param_groups``: lr factors, weight-decay rules).
        regularizers: name -> ``REGULARIZERS`` factory (or a list of factories), each
            ``() -> callable(model) -> scalar`` added to the loss and logged as ``reg/<name>``.
        grad_clip, grad_clip_type: gradient clipping (0: off; ``"norm"`` or ``"value"``).
    """

    lr: float = 1e-3
    optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None
    lr_schedule: Optional[Callable[..., Any]] = None
    param_groups: Callable[[nn.Module], List[Dict[str, Any]]] = build_param_groups
    regularizers: Union[Mapping[str, Callable[[], Callable]], Sequence[Callable[[], Callable]]] = ()
    grad_clip: float = 0.0
    grad_clip_type: str = "norm"

    def __post_init__(self) -> None:
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr >= 0:
            _fail("Solver", "lr", "a number >= 0", self.lr, "1e-3")
        if isinstance(self.grad_clip, bool) or not isinstance(self.grad_clip, (int, float)) or not self.grad_clip >= 0:
            _fail("Solver", "grad_clip", "a number >= 0 (0: no clipping)", self.grad_clip, 1.0)
        if self.grad_clip_type not in ("norm", "value"):
            _fail("Solver", "grad_clip_type", "'norm' or 'value'", self.grad_clip_type, "'norm'")


@gin.configurable(module="engine")
@dataclasses.dataclass(frozen=True)
class Schedule:
    """How long the run is and how often it validates, saves and logs.

    Args:
        epochs, max_iter: the run's length; give exactly one.
        period_unit: ``"epoch"`` or ``"iter"``: the unit of ``eval_period`` and ``checkpoint_period``.
        eval_period, checkpoint_period: how often to validate / save (0: only at the end).
        log_period: iterations between metric lines (console, metrics.json, TensorBoard).
    """

    epochs: int = 0
    max_iter: int = 0
    period_unit: str = "epoch"
    eval_period: int = 1
    checkpoint_period: int = 1
    log_period: int = 20

    def __post_init__(self) -> None:
        if self.period_unit not in ("epoch", "iter"):
            _fail("Schedule", "period_unit", "'epoch' or 'iter'", self.period_unit, "'epoch'")
        _check_counts("Schedule", 1, log_period=self.log_period)
        _check_counts("Schedule", 0, epochs=self.epochs, max_iter=self.max_iter, eval_period=self.eval_period,
                      checkpoint_period=self.checkpoint_period)
        if bool(self.epochs) == bool(self.max_iter):
            raise ValueError(f"Give exactly one of Schedule.epochs ({self.epochs}) or Schedule.max_iter "
                             f"({self.max_iter}) (e.g. --gin 'Schedule.epochs = 10').")


@gin.configurable(module="engine")
@dataclasses.dataclass(frozen=True)
class Runtime:
    """Where and how the steps run.

    Args:
        device: ``"auto"`` (this rank's GPU, else CPU), ``"cpu"``, ``"cuda:0"``, ...
        seed: seeds model init, data order and augmentation (-1: draw one).
        deterministic: deterministic kernels (:func:`flexcore.utils.env.set_deterministic`; not
            with ``fft_autotune``).
        num_threads: torch's CPU threads during the run (None: torch's default, one per core);
            small models gain nothing from more, and on a shared machine they slow every step.
        amp: mixed precision of the training forward: None (float32), ``"bf16"`` or ``"fp16"`` (with
            a gradient scaler). FFT convolutions and evaluation run in float32 whatever the input.
        channels_last: channels-last memory for the model and 4-D inputs (2-D image models).
        compile: ``torch.compile`` the model (compiled on the first step).
        compile_mode, compile_backend: torch.compile's (None, ``"reduce-overhead"``, ...; ``"inductor"``,
            ``"aot_eager"`` to debug).
        compile_fallback: train eagerly if compiling fails (False: raise).
        fft_autotune: during the run, time the spatial and FFT paths once per shape where the 'auto'
            cost model cannot tell them apart; keep the faster (``flexcore.layers.fft_cost``).
            Off, evaluations take the model's picks too: repeated/resumed runs match to the bit.
    """

    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    num_threads: Optional[int] = None
    amp: Optional[str] = None
    channels_last: bool = False
    compile: bool = False
    compile_mode: Optional[str] = None
    compile_backend: str = "inductor"
    compile_fallback: bool = True
    fft_autotune: bool = False

    def __post_init__(self) -> None:
        if self.num_threads is not None:
            _check_counts("Runtime", 1, num_threads=self.num_threads)
        if self.fft_autotune and self.deterministic:
            raise ValueError(
                "Runtime.fft_autotune = True times both convolution paths and may pick either, which "
                "Runtime.deterministic = True rules out; turn one of them off"
            )


@gin.configurable(module="engine")
@dataclasses.dataclass(frozen=True)
class Checkpoints:
    """What the run starts from and keeps.

    Args:
        init_weights: checkpoint to initialise the model from (``--weights``).
        init_strict: a key/shape mismatch with ``init_weights`` is an error (False: load what fits).
        weights_only: safe checkpoint loading (``--unsafe-load`` turns it off).
        max_to_keep: periodic checkpoints kept besides ``model_best``/``model_final`` (None: all).
    """

    init_weights: Optional[str] = None
    init_strict: bool = True
    weights_only: bool = True
    max_to_keep: Optional[int] = 3

    def __post_init__(self) -> None:
        if self.max_to_keep is not None:
            _check_counts("Checkpoints", 1, max_to_keep=self.max_to_keep)


@gin.configurable(module="engine")
@dataclasses.dataclass(frozen=True)
class Outputs:
    """What the run writes besides checkpoints, metrics and the summary.

    Args:
        tensorboard: write TensorBoard event files.
        kernel_report: write the kernel report (sizes, plots) at the end of training.
        profile_steps: profile this many steps with ``TorchProfiler`` and stop (``--profile N``).
    """

    tensorboard: bool = True
    kernel_report: bool = True
    profile_steps: int = 0

    def __post_init__(self) -> None:
        _check_counts("Outputs", 0, profile_steps=self.profile_steps)


class TrainerConfig(NamedTuple):
    """One run's settings, by group (``trainer.cfg.solver.lr``)."""

    data: Data
    solver: Solver
    schedule: Schedule
    runtime: Runtime
    checkpoints: Checkpoints
    outputs: Outputs


GROUPS: Dict[str, type] = dict(zip(TrainerConfig._fields, (Data, Solver, Schedule, Runtime, Checkpoints, Outputs)))
FIELD_GROUP: Dict[str, str] = {f.name: attr for attr, cls in GROUPS.items() for f in dataclasses.fields(cls)}
TRAINER = "Trainer"  # the gin name the flat settings of earlier releases were bound under
RENAMED: Dict[str, str] = {"schedule": "lr_schedule"}  # earlier flat names that changed besides their group


def new_name(old: str) -> str:
    """``Group.field`` for a flat ``Trainer`` setting of earlier releases (``epochs`` -> ``Schedule.epochs``)."""
    name = RENAMED.get(old, old)
    return f"{GROUPS[FIELD_GROUP[name]].__name__}.{name}"


def _unknown(name: str) -> TypeError:
    known = sorted(FIELD_GROUP) + sorted(RENAMED)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {new_name(close[0])}?" if close else ""
    return TypeError(f"Trainer got an unknown setting {name!r}.{hint} The settings are the fields of "
                     + ", ".join(cls.__name__ for cls in GROUPS.values()) + " (docs/training.md).")


_WARNED: set = set()


def _warn_renamed(names: Sequence[str]) -> None:
    """Warn (once per binding) about each of ``names`` that gin binds under its flat name, saying
    where the binding is and what it is called now."""
    bound = []
    for name in names:
        try:
            gin.query_parameter(f"{TRAINER}.{name}")
            bound.append(name)
        except ValueError:
            pass
    if not bound:
        return
    where = {arg: origin for (_, selector, arg), (_, origin, _) in binding_origins().items()
             if selector.split(".")[-1] == TRAINER}
    lines = []
    for name in bound:
        key = (name, where.get(name, "gin"))
        if key not in _WARNED:
            _WARNED.add(key)
            lines.append(f"  Trainer.{name} -> {new_name(name)}  ({where.get(name, 'gin')})")
    if lines:
        logger.warning("%d setting(s) use the flat Trainer.* names of earlier releases; they still apply, but "
                       "rename them (`flexcore-migrate-config FILE.gin` rewrites a file; docs/training.md):\n%s",
                       len(lines), "\n".join(lines))


def assemble_config(groups: Mapping[str, Any], overrides: Mapping[str, Any]) -> TrainerConfig:
    """The run's :class:`TrainerConfig`: each group as given or built from gin, with ``overrides``
    (field name -> value, any group) applied on top."""
    groups, overrides = dict(groups), dict(overrides)
    if groups.get("schedule") is not None and not isinstance(groups["schedule"], Schedule):
        overrides["schedule"] = groups.pop("schedule")  # ``Trainer.schedule = @Cosine`` of earlier releases
    per_group: Dict[str, Dict[str, Any]] = {attr: {} for attr in GROUPS}
    for name, value in overrides.items():
        field = RENAMED.get(name, name)
        if field not in FIELD_GROUP:
            raise _unknown(name)
        per_group[FIELD_GROUP[field]][field] = value
    _warn_renamed(list(overrides))
    built = {}
    for attr, cls in GROUPS.items():
        group, fields = groups.get(attr), per_group[attr]
        if group is not None and not isinstance(group, cls):
            raise TypeError(f"Trainer.{attr} must be a {cls.__name__} (e.g. @{cls.__name__}()), got {group!r}")
        built[attr] = cls(**fields) if group is None else dataclasses.replace(group, **fields)
    return TrainerConfig(**built)


TRAINER_ARGUMENTS = ("output_dir", *TrainerConfig._fields, "extra_hooks")  # Trainer's own, besides the fields


def check_bindings() -> None:
    """ConfigError for what the last parsed config names wrongly, before anything is built: a
    ``Trainer.<name>`` that is no setting (gin cannot tell: ``Trainer`` takes ``**overrides``),
    or a ``Data.dataset`` that is not registered."""
    for (_, selector, arg), (text, origin, _) in binding_origins().items():
        if selector.split(".")[-1] != TRAINER or not arg:
            continue
        if arg not in TRAINER_ARGUMENTS and RENAMED.get(arg, arg) not in FIELD_GROUP:
            raise ConfigError(f"{text}  ({origin}): {_unknown(arg)}")
    name = configured_value("dataset")  # unbound: the trainer reports the missing binding itself
    if isinstance(name, str):
        try:
            DATASETS.get_raw(name)
        except UnknownNameError as exc:
            raise ConfigError(f"Data.dataset = {name!r}: {exc}") from None


def configured_value(field: str, default: Any = None) -> Any:
    """The value gin's config gives a setting, without building anything; macros are resolved.
    ``default`` if unbound. An earlier release's flat ``Trainer.field`` wins over ``Group.field``,
    as it does in the run (it reaches the Trainer as an override)."""
    names = [f"Trainer.{old}" for old in [field] + [o for o, n in RENAMED.items() if n == field]] + [new_name(field)]
    for name in names:
        try:
            value = gin.query_parameter(name)
        except ValueError:
            continue
        if isinstance(value, gin.config.ConfigurableReference) and str(value).startswith("%"):
            value = gin.query_parameter(str(value))
        return value
    return default


def resolve_device(device: str) -> torch.device:
    """``"auto"``: this rank's GPU if there is one, else the CPU; any other value as given."""
    if device == "auto":
        return torch.device(f"cuda:{comm.get_local_rank()}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(device)


def build_regularizers(regularizers) -> Dict[str, Callable[[nn.Module], torch.Tensor]]:
    """name -> built regularizer, from ``Solver.regularizers`` (a mapping, or factories named after themselves)."""
    items = regularizers.items() if isinstance(regularizers, Mapping) else [
        (getattr(factory, "__name__", type(factory).__name__), factory) for factory in regularizers
    ]
    built = {}
    for name, factory in items:
        if name in built:
            raise ValueError(f"Two regularizers are named {name!r}; give them names: Solver.regularizers = {{...}}")
        built[name] = factory()
    return built

