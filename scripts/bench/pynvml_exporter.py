#!/usr/bin/env python3
"""Baseline for the benchmarks: the minimal Python GPU exporter people write, pynvml
(nvidia-ml-py) + prometheus_client, reading the same fields on a 1 s loop and serving them
with start_http_server. Loads whatever libnvidia-ml.so.1 the dynamic loader finds (the
benchmark points LD_LIBRARY_PATH at the stand-in)."""
import sys
import threading
import time

import pynvml
from prometheus_client import Gauge, start_http_server

L = ["gpu", "uuid", "model"]
util = Gauge("gpu_utilization_ratio", "util", L)
mem_util = Gauge("gpu_memory_copy_utilization_ratio", "mem util", L)
mem_used = Gauge("gpu_memory_used_bytes", "used", L)
mem_total = Gauge("gpu_memory_total_bytes", "total", L)
power = Gauge("gpu_power_usage_watts", "power", L)
limit = Gauge("gpu_power_limit_watts", "limit", L)
energy = Gauge("gpu_energy_consumption_joules", "energy", L)
temp = Gauge("gpu_temperature_celsius", "temp", L)
sm = Gauge("gpu_sm_clock_hertz", "sm", L)
memclk = Gauge("gpu_memory_clock_hertz", "mem clock", L)
enc = Gauge("gpu_encoder_utilization_ratio", "enc", L)
dec = Gauge("gpu_decoder_utilization_ratio", "dec", L)
throttle = Gauge("gpu_clock_throttle_reasons", "bits", L)
ecc = Gauge("gpu_ecc_errors", "ecc", L + ["type"])
replay = Gauge("gpu_pcie_replay", "replay", L)
cycle = Gauge("baseline_collection_duration_seconds", "cycle")


def collect():
    t0 = time.perf_counter()
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        lab = [str(i), pynvml.nvmlDeviceGetUUID(h), pynvml.nvmlDeviceGetName(h)]
        u = pynvml.nvmlDeviceGetUtilizationRates(h)
        util.labels(*lab).set(u.gpu / 100)
        mem_util.labels(*lab).set(u.memory / 100)
        m = pynvml.nvmlDeviceGetMemoryInfo(h)
        mem_used.labels(*lab).set(m.used)
        mem_total.labels(*lab).set(m.total)
        power.labels(*lab).set(pynvml.nvmlDeviceGetPowerUsage(h) / 1000)
        limit.labels(*lab).set(pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000)
        energy.labels(*lab).set(pynvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000)
        temp.labels(*lab).set(pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))
        sm.labels(*lab).set(pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM) * 1e6)
        memclk.labels(*lab).set(pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM) * 1e6)
        enc.labels(*lab).set(pynvml.nvmlDeviceGetEncoderUtilization(h)[0] / 100)
        dec.labels(*lab).set(pynvml.nvmlDeviceGetDecoderUtilization(h)[0] / 100)
        throttle.labels(*lab).set(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h))
        for kind, name in ((0, "corrected"), (1, "uncorrected")):
            ecc.labels(*lab, name).set(pynvml.nvmlDeviceGetTotalEccErrors(h, kind, 0))
        replay.labels(*lab).set(pynvml.nvmlDeviceGetPcieReplayCounter(h))
    cycle.set(time.perf_counter() - t0)


def main():
    port = int(sys.argv[1])
    pynvml.nvmlInit()
    collect()
    start_http_server(port, addr="127.0.0.1")

    def loop():
        while True:
            time.sleep(1)
            collect()

    threading.Thread(target=loop, daemon=True).start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
