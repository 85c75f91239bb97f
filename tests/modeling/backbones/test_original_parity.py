"""Whole-model parity with the original FlexConv code (seed fixtures, CPU float32)."""
import json

import pytest
import torch

from flexcore.compat.original.weights import convert_original_model
from flexcore.compat.original.spec import spec_from_config

CASES = ["flexnet7_cifar10", "flexnet7_cifar10_perturbed", "flextcn_scifar10"]


def load_case(folder, case):
    meta = json.loads((folder / f"{case}.json").read_text())
    ref = torch.load(folder / f"{case}.pt", weights_only=True)
    ctor = meta["constructor"]
    spec = spec_from_config(meta["config"], ctor["in_channels"], ctor["out_channels"])
    return meta, ref, spec


def rel_err(out, ref):
    return ((out - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the fixtures were made on one thread
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("case", ["flexnet7_cifar10", "flextcn_scifar10"])
def test_seeded_construction_reproduces_original_init(seed_fixtures, case):
    meta, ref, spec = load_case(seed_fixtures, case)
    torch.manual_seed(meta["torch_seed"])
    model = spec.build()
    converted = convert_original_model(ref["state_dict"], spec.kernel_type, spec.dim)
    ours = model.state_dict()
    assert set(converted) == set(ours)
    # train_length: the original fixes the grid on the first forward (0 before), flexcore at
    # construction for an int horizon; a loaded 0 is re-fixed on the first forward.
    mismatched = [k for k, v in ours.items()
                  if not k.endswith("train_length") and not torch.equal(v, converted[k].to(v.dtype))]
    assert mismatched == []
    assert sum(p.numel() for p in model.parameters()) == meta["parameter_count"]


@pytest.mark.parametrize("case", CASES)
def test_original_weights_reproduce_outputs_kernels_activations(seed_fixtures, case):
    meta, ref, spec = load_case(seed_fixtures, case)
    model = spec.build()
    model.load_state_dict(convert_original_model(ref["state_dict"], spec.kernel_type, spec.dim))
    model.eval()

    activations = {}
    blocks = model.blocks if spec.backbone == "FlexNet" else model.backbone
    prefix = "blocks" if spec.backbone == "FlexNet" else "backbone"
    if spec.backbone == "FlexNet":
        blocks[0].register_forward_pre_hook(lambda m, args: activations.__setitem__("stem", args[0][0]))
    for i, block in enumerate(blocks):
        block.register_forward_hook(lambda m, args, out, i=i: activations.__setitem__(f"{prefix}.{i}", out[0]))
    with torch.no_grad():
        out = model(ref["input"])

    assert out.shape == tuple(meta["output_shape"])
    assert rel_err(out, ref["output"]) <= 1e-5
    assert set(activations) == set(ref["activations"])
    for name, value in ref["activations"].items():
        assert rel_err(activations[name], value) <= 1e-5, name
    convs = dict(model.named_modules())
    for name, expected in ref["kernel_slices"].items():
        conv = convs[name]
        assert list(conv.kernel_size()) == meta["conv_layers"][name]["kernel_shape"][2:], name
        kernel = conv.conv_kernel[:2, :2]
        assert kernel.shape == expected.shape, name
        assert rel_err(kernel, expected) <= 1e-5, name


def test_gin_round_trip_builds_the_same_model(seed_fixtures):
    import gin

    from flexcore.modeling import build_model

    meta, ref, spec = load_case(seed_fixtures, "flexnet7_cifar10")
    gin.parse_config(spec.gin())
    from flexcore.data.base import DatasetMetadata

    torch.manual_seed(0)
    model = build_model(DatasetMetadata("cifar10", 3, 10, (32, 32)))
    torch.manual_seed(0)
    direct = spec.build()
    assert type(model) is type(direct)
    for (k, a), (k2, b) in zip(model.state_dict().items(), direct.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
