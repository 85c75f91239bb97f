"""A real 2x2 local sweep records each run for TensorBoard's HParams tab."""
import json
import pickle

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata

from flexcore.engine.defaults import default_argument_parser, main
from flexcore.engine.launch import launch
from flexcore.engine.sweep import _hparam_domains, _with_hparams, parse_sweep, sweep_runs

pytestmark = pytest.mark.usefixtures("single_thread")

TINY_QUICK_START = [
    "Schedule.epochs = 0", "Schedule.max_iter = 2", "Schedule.period_unit = 'iter'", "Schedule.eval_period = 2",
    "Schedule.checkpoint_period = 0", "Data.batch_size = 16", "Outputs.kernel_report = False",
    "Outputs.tensorboard = False", "FlexNet.num_blocks = 1", "MAGNet.hidden_channels = 4",
]


def _hparams_of(run_dir):
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    return events, start, experiment, end


def _plugin_session_groups(logdir):
    """What TensorBoard's HParams tab lists for ``logdir``: its own backend, on the event files."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    tb = base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer,
                               data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(logdir)))
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100,
                                               allowed_statuses=[api_pb2.STATUS_SUCCESS])
    handler = list_session_groups.Handler(context.RequestContext(), backend_context.Context(tb), "", request)
    groups = handler.run().session_groups
    return {g.name: ({k: v.number_value for k, v in g.hparams.items()}, {m.name.tag: m.value for m in g.metric_values})
            for g in groups}


def test_sweep_runs_write_hparams_with_the_swept_values_and_final_metrics(tmp_path):
    argv = ["--output-dir", str(tmp_path / "sweep"), "--sweep", "Solver.lr=0.01,0.001",
            "--sweep", "FlexNet.hidden_channels=4,6"]
    for binding in TINY_QUICK_START:
        argv += ["--gin", binding]
    rows = launch(main, default_argument_parser().parse_args(argv))
    assert [r["status"] for r in rows] == ["completed"] * 4
    seen = set()
    for row in rows:
        events, start, experiment, end = _hparams_of(row["output_dir"])
        values = {k: v.number_value for k, v in start.hparams.items()}
        assert values == {"Solver.lr": float(row["bindings"]["Solver.lr"]),
                          "FlexNet.hidden_channels": int(row["bindings"]["FlexNet.hidden_channels"])}
        seen.add(tuple(sorted(values.items())))
        domains = {h.name: sorted(v.number_value for v in h.domain_discrete.values) for h in experiment.hparam_infos}
        assert domains == {"Solver.lr": [0.001, 0.01], "FlexNet.hidden_channels": [4, 6]}
        metric_tags = {m.name.tag for m in experiment.metric_infos}
        summary = json.loads(open(f"{row['output_dir']}/summary.json").read())
        assert "hparams/test_accuracy_final_model" in metric_tags and "hparams/iterations" not in metric_tags
        accuracy = events.Scalars("hparams/test_accuracy_final_model")
        assert [(e.step, e.value) for e in accuracy] == [(1, pytest.approx(summary["test_accuracy_final_model"]))]
        assert end.status == 1  # STATUS_SUCCESS
    assert len(seen) == 4
    groups = _plugin_session_groups(tmp_path / "sweep")  # the sweep dir as TensorBoard's logdir
    assert sorted(groups) == sorted(r["run"] for r in rows)
    for row in rows:
        hparams, metrics = groups[row["run"]]
        assert hparams["Solver.lr"] == float(row["bindings"]["Solver.lr"])
        accuracy = row["summary"]["test_accuracy_final_model"]
        assert metrics["hparams/test_accuracy_final_model"] == pytest.approx(accuracy)
    assert "| lr-0.01_hidden_channels-4 " in (tmp_path / "sweep" / "sweep_summary.md").read_text()


def test_sweep_task_pickles_and_domains_keep_one_type(tmp_path):
    axes = parse_sweep(["A.lr=1e-3,1", "B.name='x','y'", "C.net=@MAGNet,@SIREN", "D.flag=True,'auto'"])
    assert _hparam_domains(axes) == {"A.lr": [0.001, 1.0], "B.name": ["x", "y"], "C.net": ["@MAGNet", "@SIREN"],
                                     "D.flag": ["True", "'auto'"]}
    task = _with_hparams(main, sweep_runs(axes, str(tmp_path))[0], axes)
    restored = pickle.loads(pickle.dumps(task))  # a SLURM array task is pickled by reference
    assert restored.func is task.func and restored.args[0] is main and restored.args[1] == task.args[1]
