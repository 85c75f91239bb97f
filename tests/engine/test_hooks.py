import pytest

from flexcore.analysis.hooks import KernelSizeLogger
from flexcore.engine.hooks import IterationTimer, PeriodicWriter, Progress
from flexcore.engine.train_loop import HookBase, TrainerBase
from flexcore.registry import HOOKS
from flexcore.utils.events import EventWriter, get_event_storage


class _Loop(TrainerBase):
    def run_step(self):
        get_event_storage().put_scalar("loss", 1.0 / (self.iter + 1))


class _Recorder(EventWriter):
    def __init__(self):
        self.iters = []
        self.closed = False

    def write(self):
        self.iters.append(get_event_storage().iter)

    def close(self):
        self.closed = True


class _Order(HookBase):
    def __init__(self, log, name):
        self.log, self.name = log, name

    def before_step(self):
        self.log.append(("before", self.name, self.trainer.iter))

    def after_step(self):
        self.log.append(("after", self.name, self.trainer.iter))


def test_hooks_run_in_registration_order_and_after_train_runs_on_error():
    log = []
    loop = _Loop()
    loop.register_hooks([_Order(log, "a"), None, _Order(log, "b")])
    loop.train(0, 2)
    assert log == [("before", "a", 0), ("before", "b", 0), ("after", "a", 0), ("after", "b", 0),
                   ("before", "a", 1), ("before", "b", 1), ("after", "a", 1), ("after", "b", 1)]
    assert loop.completed and loop.iter == 2

    class Boom(HookBase):
        finished = None

        def after_step(self):
            raise RuntimeError("boom")

        def after_train(self):
            Boom.finished = self.trainer.completed

    failing = _Loop()
    failing.register_hooks([Boom()])
    with pytest.raises(RuntimeError, match="boom"):
        failing.train(0, 3)
    assert Boom.finished is False and failing.iter == 0
    with pytest.raises(TypeError, match="HookBase"):
        failing.register_hooks([object()])


def test_periodic_writer_schedule_and_progress_bar(capsys):
    recorder = _Recorder()
    loop = _Loop()
    loop.register_hooks([IterationTimer(warmup_iter=0), PeriodicWriter([recorder], period=3), Progress(enabled=True)])
    loop.train(0, 7)
    assert recorder.iters == [2, 5, 6, 7] and recorder.closed  # every 3, the last, and after training
    err = capsys.readouterr().err
    assert "7/7" in err  # tqdm's bar
    assert loop.storage.history("time").values()


def test_writer_also_writes_at_every_checkpoint_iteration():
    """So that no checkpoint is ahead of metrics.json (a requeued job resumes after it)."""
    recorder = _Recorder()
    loop = _Loop()
    loop.register_hooks([PeriodicWriter([recorder], period=3, checkpoint_period=4)])
    loop.train(0, 9)
    assert recorder.iters == [2, 3, 5, 7, 8, 9]  # every 3, at checkpoints 3 and 7, the last, the end


def test_trainer_checkpoints_after_the_writer(tmp_path, tiny_plugin):
    import gin

    from flexcore.config import parse_config
    from flexcore.engine.hooks import PeriodicCheckpointer
    from flexcore.engine.trainer import Trainer

    parse_config([], ["Data.dataset = 'TinySum'", "build_model.backbone = @TinyNet", "Schedule.epochs = 1",
                      "Outputs.tensorboard = False"], finalize=False)
    try:
        hooks = [h for h in Trainer(str(tmp_path)).build_hooks() if h is not None]
    finally:
        gin.clear_config()
    names = [type(h).__name__ for h in hooks]
    assert isinstance(hooks[-1], PeriodicCheckpointer), names
    assert names.index("PeriodicWriter") < names.index("PeriodicCheckpointer")


def test_progress_is_silent_without_a_terminal(capsys):
    loop = _Loop()
    loop.register_hooks([Progress(enabled=False)])
    loop.train(0, 3)
    assert "3/3" not in capsys.readouterr().err


def test_kernel_size_logger_without_continuous_convs_is_quiet():
    import torch

    loop = _Loop()
    loop.model = torch.nn.Linear(2, 2)
    loop.register_hooks([KernelSizeLogger(period=1)])
    loop.train(0, 2)
    assert not [k for k in loop.storage.histories() if k.startswith("kernel_size")]


def test_registered_hooks_are_gin_configurables():
    assert {"IterationTimer", "LRScheduler", "PeriodicCheckpointer", "EvalHook", "PeriodicWriter", "Progress",
            "KernelSizeLogger", "TorchProfiler", "KernelReport", "FlopSummary", "RefreshCrops"} <= set(HOOKS.list())


def test_a_trainer_subclass_overrides_one_builder(tmp_path, tiny_plugin):
    """Like detectron2's DefaultTrainer: override build_solver / build_hooks, the rest is unchanged."""
    import gin
    import torch

    from flexcore.config import parse_config
    from flexcore.engine.hooks import PeriodicCheckpointer
    from flexcore.engine.trainer import Trainer

    class CountSteps(HookBase):
        steps = 0

        def after_step(self):
            CountSteps.steps += 1

    class SGDTrainer(Trainer):
        def build_solver(self, model):
            sgd = torch.optim.SGD(model.parameters(), lr=0.1)
            return sgd, torch.optim.lr_scheduler.LambdaLR(sgd, lambda it: 1.0), {}

        def build_hooks(self):
            hooks = super().build_hooks()
            return hooks[:-1] + [CountSteps()] + hooks[-1:]

    parse_config([], ["Data.dataset = 'TinySum'", "build_model.backbone = @TinyNet", "Schedule.max_iter = 3",
                      "Outputs.tensorboard = False", "Data.val_split = None"], finalize=False)
    try:
        trainer = SGDTrainer(str(tmp_path))
        trainer.train()
    finally:
        gin.clear_config()
    assert isinstance(trainer.optimizer, torch.optim.SGD) and CountSteps.steps == 3
    assert isinstance(trainer.hooks[-1], PeriodicCheckpointer)
    assert "RefreshCrops" in [type(h).__name__ for h in trainer.hooks]
