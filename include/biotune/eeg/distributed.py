"""Data-parallel training under torchrun (DistributedDataParallel), and the same code in one process.

Every rank draws the same global batch from the same seeded permutation and takes its share
``batch[rank::world]``. Losses are sums over the rank's share divided by the *global* total
(count or class weight), times the world size: DDP averages gradients over ranks, so the
update equals the one-process update on the whole batch (up to float summation order) and a
run with 2 processes reproduces the 1-process metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from biotune.threads import configure_threads  # noqa: F401  (re-exported: callers import it here)


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup() -> Context:
    """Join the process group torchrun describes (WORLD_SIZE > 1), else a one-process context."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(0, 1, device())
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank()
    dev = device()
    if dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    return Context(rank, dist.get_world_size(), dev)


def wrap(model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
    """DDP around ``model`` when distributed (only parameters that require grad are synchronised)."""
    if not ctx.active:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def share(indices, ctx: Context):
    """This rank's share of a global batch of indices."""
    return indices[ctx.rank::ctx.world]


def all_gather_rows(x: torch.Tensor, ctx: Context, total: int) -> torch.Tensor:
    """Rows computed round-robin (rank r holds rows r, r+world, ...) gathered back in order on every rank."""
    if not ctx.active:
        return x
    import torch.distributed as dist

    per = -(-total // ctx.world)
    padded = torch.zeros((per, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: len(x)] = x
    parts = [torch.empty_like(padded) for _ in range(ctx.world)]
    dist.all_gather(parts, padded)
    out = torch.empty((total, *x.shape[1:]), dtype=x.dtype, device=x.device)
    for r, part in enumerate(parts):
        n = len(range(r, total, ctx.world))
        out[r::ctx.world] = part[:n]
    return out


def barrier(ctx: Context) -> None:
    if ctx.active:
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(obj, ctx: Context):
    if not ctx.active:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


