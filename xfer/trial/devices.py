"""Which devices a trial can use here, answered without importing torch where that is possible.

Importing torch takes 1.5-2 s, most of the time ``launch.py`` needs to plan or submit a sweep, and the
launcher itself never touches a tensor: it only asks how many GPUs this node has. torch finds GPUs
through the NVIDIA driver's ``libcuda`` (or ROCm's ``libamdhip64``); where neither library can be
loaded, torch cannot see a GPU either, so the answer is 0 without asking it. Elsewhere torch answers.
The trial processes import torch anyway.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

GPU_DRIVERS = ("libcuda.so.1", "libcuda.so", "libamdhip64.so")  # what torch's CUDA / ROCm builds load


@functools.cache
def _driver_present() -> bool:
    for name in GPU_DRIVERS:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def _hidden_by_env() -> bool:
    """``CUDA_VISIBLE_DEVICES`` set but naming no device (``""``, or a list starting with a negative id, where
    CUDA stops reading): CUDA, and so torch, sees no GPU, whatever the driver."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return False
    first = value.split(",")[0].strip()
    return not first or first.startswith("-")


def gpu_count() -> int:
    """``torch.cuda.device_count()``: the GPUs visible to this process (``CUDA_VISIBLE_DEVICES`` applies)."""
    if "torch" not in sys.modules and (_hidden_by_env() or not _driver_present()):
        return 0
    import torch

    return torch.cuda.device_count()


def visible_gpus() -> list[str]:
    """The GPU ids this process may use, as CUDA_VISIBLE_DEVICES names them (ids or UUIDs)."""
    count = gpu_count()
    named = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return named[:count] if named else [str(i) for i in range(count)]


def resolve(requested: str) -> str:
    """``trial.device``: ``auto`` is cuda when a GPU is visible, else cpu; anything else as given."""
    if requested == "auto":
        return "cuda" if gpu_count() else "cpu"
    return requested
