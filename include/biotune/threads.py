"""How many threads torch may use in this process (one rule for every family that trains with torch)."""

from __future__ import annotations

import os


def configure_threads(num_threads: int | None = None) -> int:
    """Intra-op threads: ``num_threads``, else BIOTUNE_TORCH_THREADS, else the cores this process may
    use divided among the local ranks, halved when the machine is already busy (1-minute load >=
    cores): oversubscribed OpenMP threads spin against each other (measured on the shared 2-core
    box under load 4.6: a small backbone step took 60-120 ms with 2 threads, 7 ms with 1)."""
    import torch

    if num_threads is None:
        env = os.environ.get("BIOTUNE_TORCH_THREADS")
        if env:
            num_threads = int(env)
        else:
            try:
                cores = len(os.sched_getaffinity(0))
            except AttributeError:
                cores = os.cpu_count() or 1
            num_threads = max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
            try:
                if os.getloadavg()[0] >= cores:
                    num_threads = max(1, num_threads // 2)
            except (AttributeError, OSError):
                pass
    num_threads = max(1, int(num_threads))
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    return num_threads
