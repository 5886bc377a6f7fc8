"""Process-group start-up for multi-process trials, owned by xfer.

detectron2 v0.6's ``launch`` asserts CUDA, so xfer starts the processes itself: one per GPU with NCCL,
or CPU processes with gloo (how tests stand in for GPUs). A fresh free port per trial keeps two trials
on one node from meeting on a shared rendezvous port (detectron2 #91). One process needs no group.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port the OS just handed out on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve_world_size(requested: int | str, device: str) -> int:
    """``auto``: every visible GPU (one on CPU); an int is taken as is."""
    if requested == "auto":
        return max(torch.cuda.device_count(), 1) if device == "cuda" else 1
    return int(requested)


def _set_local_group(world_size: int) -> None:
    """Tell detectron2's comm which ranks share this machine (v0.6 and current differ here)."""
    from detectron2.utils import comm

    if hasattr(comm, "create_local_process_group"):
        comm.create_local_process_group(world_size)
    else:
        comm._LOCAL_PROCESS_GROUP = dist.new_group(list(range(world_size)))


def _worker(rank: int, fn: Callable, world_size: int, port: int, device: str, args: tuple) -> None:
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", world_size=world_size, rank=rank)
    try:
        _set_local_group(world_size)
        dist.barrier()
        fn(*args)
    finally:
        dist.destroy_process_group()


def launch(fn: Callable, world_size: int, device: str, args: tuple = ()) -> None:
    """Run ``fn(*args)`` in ``world_size`` processes of one process group (in-process when 1)."""
    if world_size == 1:
        fn(*args)
        return
    mp.start_processes(
        _worker, nprocs=world_size, args=(fn, world_size, free_port(), device, args), start_method="spawn"
    )
