"""What every benchmark shares: median wall time after a warm-up, and the machine it ran on."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from jukelite.bundle import device_name


def median_time(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    def synced() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    synced()  # warm-up: allocator, kernels, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        synced()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def environment(device: torch.device) -> dict[str, Any]:
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
