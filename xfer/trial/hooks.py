"""xfer's hooks in detectron2's training loop: stopping on request with a checkpoint, and ``progress.json``."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from xfer import d2compat
from xfer.store.files import PROGRESS, write_json_atomic

d2compat.ensure()

from detectron2.engine import hooks  # noqa: E402
from detectron2.utils import comm  # noqa: E402


class Interrupted(Exception):
    """Training stopped early on request (a preemption warning), after saving a checkpoint."""

    def __init__(self, iteration: int) -> None:
        super().__init__(f"stopped after iteration {iteration}, checkpoint saved")
        self.iteration = iteration


class StopOnRequest(hooks.HookBase):
    """After each iteration, if any rank was asked to stop: save a checkpoint there, then stop.

    The ranks agree through one all-reduce per iteration, so all save and stop at the same iteration.
    """

    def __init__(self, requested) -> None:
        self._requested = requested

    def after_step(self):
        flag = torch.tensor([1.0 if self._requested() else 0.0])
        if comm.get_world_size() > 1:
            import torch.distributed as dist

            if dist.get_backend() == "nccl":
                flag = flag.cuda()
            dist.all_reduce(flag)
        if flag.item() > 0:
            self.trainer.checkpointer.save(f"model_{self.trainer.iter:07d}", iteration=self.trainer.iter)
            comm.synchronize()
            raise Interrupted(self.trainer.iter)


class ProgressFile(hooks.HookBase):
    """Rank 0 keeps ``progress.json`` (iteration, phase, times) current for the launcher's live view
    and ``python -m xfer status``: a few small atomic writes a minute, whatever the iteration speed."""

    def __init__(self, out_dir: str, every_s: float = 2.0) -> None:
        self._path = Path(out_dir) / PROGRESS
        self._every_s = every_s
        self._last = 0.0
        self._started = time.time()

    def write(self, phase: str, done: int) -> None:
        record = {"phase": phase, "iteration": done, "max_iter": self.trainer.max_iter,
                  "start_iter": self.trainer.start_iter, "started_at": self._started, "updated_at": time.time()}  # fmt: skip
        write_json_atomic(self._path, record)
        self._last = record["updated_at"]

    def before_train(self):
        self._started = time.time()
        self.write("training", self.trainer.start_iter)

    def after_step(self):
        if time.time() - self._last >= self._every_s or self.trainer.iter + 1 == self.trainer.max_iter:
            self.write("training", self.trainer.iter + 1)

    def after_train(self):  # also runs when training raised: then iter is where it stopped
        done = self.trainer.iter >= self.trainer.max_iter
        self.write("evaluating" if done else "stopped", min(self.trainer.iter, self.trainer.max_iter))
