"""Hydra launcher ``xfer``: compose and check the whole sweep, then run its trials, then collect.

Hydra finds plugins only inside the ``hydra_plugins`` namespace; the work is in ``xfer.launch.sweep``. The
``xfer`` sweeper is Hydra's basic sweeper without its own pass composing every job to validate the
batch: the launcher composes every job anyway and reports the same errors, and composing twice was
half of the time to plan or submit a sweep.
No ``from __future__ import annotations`` here: Hydra execs this module outside sys.modules, where
dataclasses cannot resolve string annotations.
"""

from collections.abc import Sequence
from dataclasses import dataclass
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


class XferLauncher(Launcher):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from xfer.launch import sweep

        return sweep.launch(self.hydra_context, self.task_function, self.config, job_overrides, initial_job_idx)
