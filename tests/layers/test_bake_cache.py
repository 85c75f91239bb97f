import copy
import functools

import pytest
import torch
import torch.nn as nn

from flexcore.layers import (BakedConv1d, CKConv, Conv, FlexConv, SeparableFlexConv, SRFConv, bake_model,
                             clear_kernel_caches, refresh_crops)
from flexcore.layers.masks import GaussianMask

from layer_test_utils import TinyKernelNet


class BNKernelNet(TinyKernelNet):
    """A kernel net whose output depends on train/eval mode (BatchNorm over grid points)."""

    def __init__(self, dim, out_channels):
        super().__init__(dim, out_channels)
        self.norm = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[dim - 1](8)
        self.calls = 0

    def forward(self, positions):
        self.calls += 1
        return self.out(torch.sin(self.norm(4.0 * self.first(positions))))


def _wide_mask(dim, causal=False):
    return GaussianMask(dim, causal=causal, init_value=0.2)


LAYERS = [
    ("flexconv2d", lambda: FlexConv(3, 4, 2, kernel_net=BNKernelNet, mask=_wide_mask, horizon=17), (2, 3, 16, 16)),
    ("flexconv2d_fft", lambda: FlexConv(3, 4, 2, kernel_net=BNKernelNet, mask=_wide_mask, horizon=17, fft=True), (2, 3, 16, 16)),
    ("ckconv2d_even_same", lambda: CKConv(3, 4, 2, kernel_net=BNKernelNet), (2, 3, 12, 10)),
    ("ckconv2d_stride", lambda: CKConv(3, 4, 2, kernel_net=BNKernelNet, horizon=5, stride=2), (2, 3, 11, 11)),
    ("flexconv1d_causal", lambda: FlexConv(3, 4, 1, causal=True, kernel_net=BNKernelNet, mask=_wide_mask), (2, 3, 40)),
    ("ckconv1d_causal_fft", lambda: CKConv(3, 4, 1, causal=True, kernel_net=BNKernelNet, fft=True), (2, 3, 40)),
    ("ckconv3d", lambda: CKConv(2, 3, 3, kernel_net=BNKernelNet, horizon=3), (1, 2, 6, 6, 6)),
    ("separable", lambda: SeparableFlexConv(3, 5, 2, kernel_net=BNKernelNet, mask=_wide_mask, horizon=9), (2, 3, 10, 10)),
    ("conv1d_causal", lambda: Conv(3, 4, 1, causal=True, kernel_size=6), (2, 3, 20)),
    ("srf", lambda: SRFConv(3, 4, 2), (2, 3, 12, 12)),
]


@pytest.mark.parametrize("name,make,shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_baked_layer_equals_eval_output(name, make, shape):
    torch.manual_seed(0)
    layer = make()
    x = torch.randn(*shape)
    layer.train()
    layer(x)  # BatchNorm in the kernel net moves its running stats
    layer.eval()
    with torch.no_grad():
        expected = layer(x)
        baked = layer.bake()
        got = baked(x)
    assert isinstance(baked, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Sequential))
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_bake_gives_plain_conv_when_possible():
    layer = FlexConv(3, 4, 2, kernel_net=TinyKernelNet, horizon=33, fft=False)
    layer(torch.randn(1, 3, 32, 32))
    baked = layer.bake()
    assert type(baked) is nn.Conv2d and baked.kernel_size == (5, 5) and baked.padding == (2, 2)
    causal = FlexConv(3, 4, 1, causal=True, kernel_net=TinyKernelNet, fft=False)
    causal(torch.randn(1, 3, 50))
    assert type(causal.bake()) is BakedConv1d  # left padding only


def test_bake_model_replaces_every_conv_and_matches():
    torch.manual_seed(0)
    model = nn.Sequential(
        FlexConv(3, 8, 2, kernel_net=BNKernelNet, horizon=17), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Sequential(CKConv(8, 8, 2, kernel_net=TinyKernelNet, horizon=9)), Conv(8, 4, 2, kernel_size=3),
    )
    x = torch.randn(2, 3, 16, 16)
    model.train()
    model(x)
    model.eval()
    with torch.no_grad():
        expected = model(x)
        baked = bake_model(copy.deepcopy(model))
        got = baked(x)
    kinds = [type(m).__name__ for m in baked.modules()]
    assert not {"FlexConv", "CKConv", "Conv", "BNKernelNet"} & set(kinds)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


@pytest.mark.parametrize("dim,norm", [(2, "BatchNorm"), (1, "BatchNorm"), (2, "LayerNorm")])
def test_bake_model_folds_declared_batch_norms_and_goes_channels_last_on_cpu(dim, norm):
    from flexcore.modeling.backbones.flexnet import FlexNet

    torch.manual_seed(0)
    conv = functools.partial(FlexConv, kernel_net=TinyKernelNet, mask=_wide_mask, horizon=9)
    model = FlexNet(3, 5, dim, hidden_channels=6, num_blocks=2, block_width_factors=(1.0, 1, 1.5, 1), conv=conv,
                    norm=norm, dropout=0.0)
    x = torch.randn(4, 3, *([12] * dim))
    for _ in range(3):  # train-mode forwards move the running statistics away from (0, 1)
        model(x)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    model.eval()
    with torch.no_grad():
        expected = model(x)
        folded = bake_model(copy.deepcopy(model))
        unfolded = bake_model(copy.deepcopy(model), fold_norms=False)
        got, got_unfolded = folded(x), unfolded(x)
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs) and (dim == 1 or convs)
    with torch.no_grad():
        plain = bake_model(copy.deepcopy(model), channels_last=False)
        assert all(m.weight.is_contiguous() for m in plain.modules() if isinstance(m, nn.Conv2d))
        assert (plain(x) - expected).abs().max() <= 1e-5 * expected.abs().max()
    norms = lambda m: [n for n in m.modules() if isinstance(n, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm))]  # noqa: E731
    assert len(norms(unfolded)) == 5  # stem + 2 per block
    assert len(norms(folded)) == (0 if norm == "BatchNorm" else 5)  # LayerNorm cannot be folded
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
    assert (got_unfolded - expected).abs().max() <= 1e-5 * expected.abs().max()


# -- kernel cache ----------------------------------------------------------------------------
def _layer():
    torch.manual_seed(0)
    layer = FlexConv(2, 3, 2, kernel_net=BNKernelNet, mask=_wide_mask, horizon=17)
    layer(torch.randn(2, 2, 16, 16))  # train-mode forward: fixes the grid, moves BN stats
    return layer.eval()


def test_eval_kernel_is_cached_until_a_parameter_changes():
    layer = _layer()
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        y1 = layer(x)
        calls = layer.kernel_net.calls
        y2 = layer(x)
        assert layer.kernel_net.calls == calls and torch.equal(y1, y2)
    # optimiser step -> recomputed
    opt = torch.optim.SGD(layer.parameters(), lr=1e-4)
    layer.train()
    layer(x).square().sum().backward()
    opt.step()
    layer.eval()
    with torch.no_grad():
        y3 = layer(x)
        fresh = copy.deepcopy(layer)
        fresh.clear_cache()
        assert torch.equal(y3, fresh(x)) and not torch.equal(y3, y1)


def test_cache_invalidated_by_load_state_dict():
    layer, other = _layer(), _layer()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05)
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        before = layer(x)
        layer.load_state_dict(other.state_dict())
        after = layer(x)
        assert not torch.equal(before, after)
        assert torch.allclose(after, other(x), atol=1e-6)


def test_cache_invalidated_by_dtype_change_and_mode_switch():
    layer = _layer()
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        layer(x)
        layer.double()
        y = layer(x.double())
        assert y.dtype == torch.float64 and layer.conv_kernel.dtype == torch.float64
        # train mode never uses the cache (BatchNorm batch statistics differ from running ones)
        layer.train()
        calls = layer.kernel_net.calls
        layer(x.double())
        layer(x.double())
        assert layer.kernel_net.calls == calls + 2
        layer.eval()
        fresh = copy.deepcopy(layer)
        fresh.clear_cache()
        assert torch.equal(layer(x.double()), fresh(x.double()))


def test_eval_with_gradients_does_not_use_a_detached_cache():
    layer = _layer()
    x = torch.randn(1, 2, 16, 16)
    layer(x).sum().backward()  # eval mode, grad enabled: kernel must carry gradients
    assert layer.mask.sigma.grad is not None and layer.kernel_net.first.weight.grad is not None


def test_refresh_crops_fetches_all_bounds_at_once():
    torch.manual_seed(0)
    model = nn.Sequential(*[FlexConv(2, 2, 2, kernel_net=TinyKernelNet, horizon=33) for _ in range(3)])
    x = torch.randn(1, 2, 8, 8)
    model(x)
    with torch.no_grad():
        model[1].mask.sigma.fill_(0.2)  # bumps the version: crop must be recomputed
    assert refresh_crops(model) == 1  # the other two crops are still valid: not read again
    assert refresh_crops(model) == 0
    for conv in model:
        conv.mask.bounds = None  # a forward that asked the mask again would fail
    model(x)
    assert [c.kernel_size() for c in model] == [(5, 5), (13, 13), (5, 5)]


def test_clear_kernel_caches_after_data_edits():
    layer = _layer()
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        y1 = layer(x)
        layer.kernel_net.out.bias.data.add_(1.0)  # .data bypasses the version counter
        clear_kernel_caches(layer)
        assert not torch.equal(layer(x), y1)


def _ddp_cache_worker(rank, world, folder):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    layer = FlexConv(2, 3, 2, kernel_net=BNKernelNet, mask=_wide_mask, horizon=9)
    model = nn.parallel.DistributedDataParallel(layer)  # broadcasts buffers in place every train forward
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 2, 8, 8)
    results = []
    for step in range(2):
        model.train()
        model(x + rank).square().sum().backward()  # different data per rank: DDP averages the grads
        opt.step()
        model.eval()
        with torch.no_grad():
            calls = layer.kernel_net.calls
            y = model(x)
            assert torch.equal(model(x), y)
            results.append((layer.kernel_net.calls - calls, y))
    gathered = [torch.zeros_like(y) for _ in range(world)]
    dist.all_gather(gathered, results[-1][1])
    fresh = copy.deepcopy(layer)
    fresh.clear_cache()
    with torch.no_grad():
        stale = not torch.equal(fresh(x), results[-1][1])
    torch.save({"calls": [c for c, _ in results], "same_across_ranks": torch.equal(*gathered), "stale": stale,
                "changed": not torch.equal(results[0][1], results[1][1])}, f"{folder}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_eval_cache_under_ddp(tmp_path):
    """Real DDP, 2 gloo processes: the eval kernel is computed once per parameter state (then
    reused), refreshed after every optimiser step, and identical on both ranks."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_cache_worker, args=(2, str(tmp_path)), nprocs=2)
    for rank in range(2):
        res = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert res["calls"] == [1, 1]  # one kernel computation for two eval forwards, after each step
        assert res["same_across_ranks"] and res["changed"] and not res["stale"]


def test_baked_fft_conv_reuses_its_spectrum_and_notices_new_weights():
    import copy
    import pickle

    from flexcore.layers import functional as FC
    from flexcore.layers.conv_base import make_baked_conv

    torch.manual_seed(0)
    w, b, x = torch.randn(4, 3, 9, 7), torch.randn(4), torch.randn(2, 3, 16, 12)
    pads = FC.resolve_padding("same", (9, 7))
    baked = make_baked_conv(w, b, (1, 1), pads, fft=True)
    with torch.no_grad():
        first = baked(x)
        spectrum = baked._spectrum_cache[1]
        assert torch.allclose(first, FC.conv_spatial(x, w, b, (1, 1), pads), atol=1e-5)
        baked(x)
        assert baked._spectrum_cache[1] is spectrum  # same shape, same weights: reused
        baked.weight.mul_(2)
        assert torch.allclose(baked(x), FC.conv_spatial(x, 2 * w, b, (1, 1), pads), atol=1e-4)
    assert "_spectrum_cache" not in pickle.loads(pickle.dumps(baked)).__dict__
    assert "_spectrum_cache" in baked.__dict__  # pickling left the live module alone
    out = copy.deepcopy(baked)(x.requires_grad_())  # with grad: no cache, gradients flow
    out.sum().backward()
    assert x.grad is not None and baked.weight.grad is None
