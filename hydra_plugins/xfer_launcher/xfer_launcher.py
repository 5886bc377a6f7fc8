"""Hydra launcher ``xfer``: compose and check the whole sweep, then run its trials, then collect.

Hydra finds plugins only inside the ``hydra_plugins`` namespace; the work is in ``xfer.launch.sweep``. The
``xfer`` sweeper is Hydra's basic sweeper without its own pass composing every job to validate the
batch: the launcher composes every job anyway and reports the same errors, and composing twice was
half of the time to plan or submit a sweep.
No ``from __future__ import annotations`` here: Hydra execs this module outside sys.modules, where
dataclasses cannot resolve string annotations.
"""

import errno
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # Hydra pinned to 1.3 in pyproject
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class XferLauncherConf:
    _target_: str = "hydra_plugins.xfer_launcher.xfer_launcher.XferLauncher"


@dataclass
class XferSweeperConf:
    _target_: str = "hydra_plugins.xfer_launcher.xfer_launcher.XferSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045 (Hydra's structured configs need typing.Optional)
    params: Optional[Any] = None  # noqa: UP045


ConfigStore.instance().store(group="hydra/launcher", name="xfer", node=XferLauncherConf, provider="xfer")
ConfigStore.instance().store(group="hydra/sweeper", name="xfer", node=XferSweeperConf, provider="xfer")


class XferSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Left to the launcher, which composes every job of the batch itself (xfer.launch.trials.plan)."""

    def sweep(self, arguments: list[str]) -> Any:
        """Hydra's sweep, which runs the launcher, once its folder can be made; a file in its place, or storage
        that fails a write on the way (a full disk), is one line, not a traceback."""
        folder = Path(str(self.config.hydra.sweep.dir))
        make_sweep_folder(folder)
        try:
            return super().sweep(arguments)
        except OSError as e:  # a full disk, a folder that cannot be written: one line, the finished trials kept
            stop_on_io_error(e, folder)


class XferLauncher(Launcher):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from xfer.launch import sweep

        return sweep.launch(self.hydra_context, self.task_function, self.config, job_overrides, initial_job_idx)


def make_sweep_folder(folder: Path) -> None:
    """The sweep's folder, made before Hydra writes into it; where it cannot be (a file in its place or on its
    way), one line and status 2, before anything is composed or run."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: the sweep's folder {folder} cannot be made ({e.strerror or e}); give output_root a folder "
              "that can hold it", file=sys.stderr)  # fmt: skip
        raise SystemExit(2) from None


def stop_on_io_error(e: OSError, folder: Path) -> None:
    """A launch stopped by its storage (a full disk, a folder made read-only, a file gone bad): one line naming
    the file, status 1. Every record is written whole or not at all, so the trials finished before it stay done
    and a partial one resumes from its last checkpoint: the same command, once that is fixed, goes on."""
    fix = {errno.ENOSPC: "free space", errno.EDQUOT: "free space (a quota)", errno.EFBIG: "free space (a file size "
           "limit)", errno.EROFS: "give output_root a folder that can be written", errno.EACCES: "give output_root "
           "a folder that can be written"}.get(e.errno, "fix what the error names")  # fmt: skip
    print(f"error: {e.filename or f'a file under {folder}'}: {e.strerror or e}; {fix} and run the same command again: finished "
          "trials are kept, unfinished ones resume from their last checkpoint", file=sys.stderr)  # fmt: skip
    raise SystemExit(1) from None
