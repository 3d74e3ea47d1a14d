"""Wall-clock time and peak memory of one call, CUDA-synchronised."""

from __future__ import annotations

import os
import threading
import time

import torch

__all__ = ["PeakMemory", "sync", "timed"]


class PeakMemory:
    """Peak resident memory (MB) above the level at entry, sampled every 5 ms; CUDA: the allocator's peak."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mb, self._stop = device, 0.0, threading.Event()

    @staticmethod
    def _rss_mb() -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base = self._rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, self._rss_mb() - self._base)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb, self._rss_mb() - self._base)
        return False


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device):
    """``(function(), seconds)``, with the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    value = function()
    sync(device)
    return value, time.perf_counter() - start
