"""System metrics sampled into the run as `system/…` keys: CPU, memory, disk and network I/O,
and per-GPU utilisation, memory, temperature and power when nvidia-ml-py finds a GPU."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psutil

log = logging.getLogger("trackd")


def _gpu_sampler() -> Callable[[], dict[str, float]] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # noqa: BLE001 — no driver
        return None

    def sample() -> dict[str, float]:
        found: dict[str, float] = {}
        for i, h in enumerate(handles):
            memory = pynvml.nvmlDeviceGetMemoryInfo(h)
            found[f"system/gpu.{i}.utilization_percent"] = pynvml.nvmlDeviceGetUtilizationRates(h).gpu
            found[f"system/gpu.{i}.memory_used_bytes"] = memory.used
            found[f"system/gpu.{i}.memory_percent"] = 100.0 * memory.used / max(memory.total, 1)
            found[f"system/gpu.{i}.temperature_c"] = pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
            found[f"system/gpu.{i}.power_w"] = pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0
        return found

    return sample


class SystemMonitor:
    def __init__(self, log_metrics: Callable[[dict[str, float]], None], interval_s: float) -> None:
        self._log_metrics = log_metrics
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._gpu = _gpu_sampler()
        self._thread = threading.Thread(target=self._loop, name="trackd-system", daemon=True)
        psutil.cpu_percent()  # the first call only primes the counter
        self._last: dict[str, Any] = {"disk": psutil.disk_io_counters(), "net": psutil.net_io_counters()}
        self._thread.start()

    def sample(self) -> dict[str, float]:
        memory = psutil.virtual_memory()
        found = {"system/cpu_percent": psutil.cpu_percent(), "system/memory_percent": memory.percent,
                 "system/memory_used_bytes": float(memory.used)}
        disk, net = psutil.disk_io_counters(), psutil.net_io_counters()
        if disk and self._last["disk"]:
            found["system/disk_read_bytes"] = float(disk.read_bytes - self._last["disk"].read_bytes)
            found["system/disk_write_bytes"] = float(disk.write_bytes - self._last["disk"].write_bytes)
        if net and self._last["net"]:
            found["system/network_sent_bytes"] = float(net.bytes_sent - self._last["net"].bytes_sent)
            found["system/network_received_bytes"] = float(net.bytes_recv - self._last["net"].bytes_recv)
        self._last = {"disk": disk, "net": net}
        if self._gpu is not None:
            found.update(self._gpu())
        return found

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._log_metrics(self.sample())
            except Exception:  # noqa: BLE001 — never break the run for a sample
                log.debug("system metrics sample failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
