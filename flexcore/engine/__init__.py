"""Training engine: the loop and its hooks, evaluation, the gin-configured jobs, launchers.

Importing this package registers the gin configurables a training config names
(``Trainer`` and its setting groups ``Data``, ``Solver``, ``Schedule``, ``Runtime``,
``Checkpoints``, ``Outputs``; ``CrossResolution``, ``experiment``) and the built-in hooks; the ``HOOKS``
registry imports it before any gin file is parsed.
"""
from .cross_resolution import CrossResolution, set_model_resolution
from .evaluation import Task, build_task, evaluate
from .train_loop import HookBase, NonFiniteLossError, SimpleTrainer, TrainerBase, unwrap_model
from .trainer import Trainer, experiment
from .trainer_config import Checkpoints, Data, Outputs, Runtime, Schedule, Solver, TrainerConfig
