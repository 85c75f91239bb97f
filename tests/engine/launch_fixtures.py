"""A tiny real training job in the shape of ``main(args)``, for the launcher tests.

It exercises what the launchers promise independently of the full Trainer: the gin
config is re-parsed in every process, DDP splits a global batch over the ranks with a
DistributedSampler, only rank 0 writes, each epoch ends with a complete checkpoint, and
``--resume`` continues from it.
"""
import json
import os
import time

import gin
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from flexcore.engine.defaults import default_setup
from flexcore.utils import comm


@gin.configurable
def tiny_experiment(
    epochs: int = 2,
    batch_size: int = 8,
    lr: float = 0.1,
    hidden: int = 8,
    num_samples: int = 32,
    seed: int = 0,
    fail_on_rank: int = -1,
    epoch_sleep_s: float = 0.0,
):
    return dict(locals())


def _data(num_samples: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, 4, generator=g)
    y = (x[:, 0] - 0.5 * x[:, 1] + 0.1 * torch.randn(num_samples, generator=g)).unsqueeze(1)
    return TensorDataset(x, y)


def tiny_main(args):
    """Train a 2-layer MLP; batch_size is the global batch, split over the ranks."""
    rank, world = comm.get_rank(), comm.get_world_size()
    output_dir = default_setup(args, rank=rank)
    cfg = tiny_experiment()
    if rank == cfg["fail_on_rank"]:
        raise ValueError(f"tiny_main failed on purpose on rank {rank}")
    torch.manual_seed(cfg["seed"])
    model = torch.nn.Sequential(torch.nn.Linear(4, cfg["hidden"]), torch.nn.Tanh(), torch.nn.Linear(cfg["hidden"], 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"])
    ckpt_path = os.path.join(output_dir, "checkpoint.pth")
    start_epoch = 0
    if args.resume and os.path.exists(ckpt_path):
        state = torch.load(ckpt_path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"] + 1
    net = DistributedDataParallel(model) if world > 1 else model
    dataset = _data(cfg["num_samples"], cfg["seed"])
    # The same sampler in a single process (1 replica) gives the same global order.
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg["seed"])
    loader = DataLoader(dataset, batch_size=cfg["batch_size"] // world, sampler=sampler, drop_last=True)
    if rank == 0:
        print(f"tiny: world {world}, batch {cfg['batch_size'] // world} per process x {world} = {cfg['batch_size']}, "
              f"epochs {start_epoch}..{cfg['epochs'] - 1}", flush=True)
    loss = torch.zeros(())
    for epoch in range(start_epoch, cfg["epochs"]):
        sampler.set_epoch(epoch)
        total = torch.zeros(())
        for x, y in loader:
            loss = torch.nn.functional.mse_loss(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach()
        mean_loss = comm.reduce_sum(total / len(loader)) / world
        time.sleep(cfg["epoch_sleep_s"])
        if rank == 0:
            tmp = ckpt_path + ".tmp"
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}, tmp)
            os.replace(tmp, ckpt_path)  # complete checkpoints only
            with open(os.path.join(output_dir, "metrics.json"), "a") as f:
                f.write(json.dumps({"epoch": epoch, "loss": float(mean_loss), "pid": os.getpid()}) + "\n")
            print(f"tiny: epoch {epoch} loss {float(mean_loss):.6f}", flush=True)
        comm.synchronize()
    if dist.is_initialized():
        comm.synchronize()
    return {"params": {k: v.clone() for k, v in model.state_dict().items()}, "world_size": world, "rank": rank,
            "pid": os.getpid()}
