"""Local GPU placement (`pipeline extract --gpu-workers N`).

Without placement, every local worker process would load its own copy of
every neural model onto the GPU. With it, the local cluster has N GPU
workers, each seeing one CUDA device only (CUDA_VISIBLE_DEVICES) and
declaring a `GPU` resource, and CPU workers that see no device and declare
`CPU`: the runner asks for `GPU` for neural-stage tasks and `CPU` for the
others (decoding, fbank/MFCC, openSMILE, MediaPipe), so each kind runs only
where it belongs.
"""
from __future__ import annotations

import os


def gpu_placement(n=None) -> list:
    """CUDA_VISIBLE_DEVICES entries for `n` GPU workers (default: one per
    device torch sees), round robin over the devices; [] without CUDA."""
    import torch
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not count:
        return []
    # Entries of the parent's own CUDA_VISIBLE_DEVICES keep naming the same physical devices.
    parent = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    names = parent[:count] if len(parent) >= count else [str(i) for i in range(count)]
    return [names[i % count] for i in range(count if n is None else n)]


def local_cluster(n_cpu, gpu_devices, log_level):
    """Worker processes with one thread each: one per GPU device entry, and
    `n_cpu` that see no GPU (declaring CPU when there are GPU workers), so
    that `--gpu-workers 0` keeps every model off the GPU."""
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster
    hidden = {"CUDA_VISIBLE_DEVICES": ""}
    if not gpu_devices:
        return LocalCluster(n_workers=n_cpu, threads_per_worker=1, processes=True, env=hidden,
                            dashboard_address=None, silence_logs=log_level)

    def worker(resources, env):
        return {"cls": Nanny, "options": {"nthreads": 1, "resources": resources, "silence_logs": log_level,
                                          "env": env}}
    spec = {f"gpu-{i}": worker({"GPU": 1}, {"CUDA_VISIBLE_DEVICES": d}) for i, d in enumerate(gpu_devices)}
    spec.update({f"cpu-{i}": worker({"CPU": 1}, hidden) for i in range(n_cpu)})
    # No dashboard; its HTTP server still listens, on a free port rather than 8787.
    scheduler = {"cls": Scheduler, "options": {"dashboard": False, "dashboard_address": ":0"}}
    return SpecCluster(workers=spec, scheduler=scheduler, silence_logs=log_level)
