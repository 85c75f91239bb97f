"""Training engine: the loop and its hooks, evaluation, the gin-configured Trainer, launchers."""
from .evaluation import Task, build_task, evaluate
from .train_loop import HookBase, NonFiniteLossError, SimpleTrainer, TrainerBase, unwrap_model
