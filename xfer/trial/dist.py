"""Process-group start-up for multi-process trials, the same for local nodes and SLURM.

detectron2 v0.6's ``launch`` asserts CUDA, so xfer starts the processes itself (``xfer.launch.local`` on a
node, SLURM's tasks on a cluster) and each joins the group here: one per GPU with NCCL, or CPU processes
with gloo (how tests stand in for GPUs). A fresh port per trial keeps two trials on one node from
meeting on a shared rendezvous port (detectron2 #91). One process needs no group. torch is imported
inside the functions that use it: the launcher takes :func:`free_port` without torch's start-up.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from xfer.store.files import write_text_atomic


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS just handed out (on the loopback interface unless told otherwise)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host if host == "127.0.0.1" else "", 0))
        return s.getsockname()[1]


def _set_local_group(world_size: int, local_size: int | None = None, rank: int = 0) -> None:
    """Tell detectron2's comm which ranks share this machine (v0.6 and current differ here).

    Ranks are laid out node by node, ``local_size`` per node; every rank must create every group."""
    import torch.distributed as dist
    from detectron2.utils import comm

    local_size = local_size or world_size
    if hasattr(comm, "create_local_process_group"):
        comm.create_local_process_group(local_size)
        return
    for node in range(world_size // local_size):
        ranks = list(range(node * local_size, (node + 1) * local_size))
        group = dist.new_group(ranks)
        if rank in ranks:
            comm._LOCAL_PROCESS_GROUP = group


SKIPPED = "skipped"  # what rank 0 publishes instead of an address when this run of the job does not train


def _published(folder: Path, job_id: str, run: str) -> Path:
    return Path(folder) / f"rendezvous-{job_id}.{run}"


def publish(folder: Path, job_id: str, run: str, text: str) -> None:
    """Rank 0: make ``text`` (an address, or :data:`SKIPPED`) this run's rendezvous, and remove what earlier
    runs of the job published, so nothing can ever read them."""
    path = _published(folder, job_id, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"rendezvous-{job_id}.*"):
        if stale != path:
            stale.unlink(missing_ok=True)
    write_text_atomic(path, text)


def rendezvous(folder: Path, job_id: str, run: str, rank: int, timeout_s: float = 600) -> str | None:
    """``tcp://host:port`` for a job whose processes were started by someone else (SLURM); None when rank 0
    published :data:`SKIPPED` (this run trains nothing: the others return too, none waits for it).

    Rank 0 takes a port the OS hands out on its own node and publishes it in a file on the shared
    file system; the others wait for that file. No fixed port, so jobs sharing a node never collide.
    ``run`` tells this run of the job from its earlier ones: a requeued SLURM job keeps its id, and an
    address its previous run published points at a process that is gone (the others would wait on it
    forever), so each run has its own file and rank 0 removes the earlier ones."""
    path = _published(folder, job_id, run)
    if rank == 0:
        host = socket.gethostname()
        address = f"tcp://{host}:{free_port(host)}"
        publish(folder, job_id, run, address)
        return address
    deadline = time.time() + timeout_s
    while not path.exists():
        if time.time() > deadline:
            raise TimeoutError(f"rank {rank}: no rendezvous address from rank 0 in {path} after {timeout_s} s")
        time.sleep(0.2)
    text = path.read_text()
    return None if text == SKIPPED else text


def join(fn: Callable, rank: int, world_size: int, local_rank: int, local_size: int, device: str, address: str,
         args: tuple = ()) -> None:  # fmt: skip
    """Run ``fn(*args)`` as ``rank`` of an already started set of processes (one SLURM task each)."""
    if world_size == 1:
        fn(*args)
        return
    import torch
    import torch.distributed as dist

    if device == "cuda":
        torch.cuda.set_device(local_rank)
    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=address, world_size=world_size, rank=rank)
    try:
        _set_local_group(world_size, local_size, rank)
        dist.barrier()
        fn(*args)
    finally:
        dist.destroy_process_group()
