"""Hydra launcher ``xfer``: compose and check the whole sweep, then run its trials, then collect.

Hydra finds launchers only inside the ``hydra_plugins`` namespace; the work is in ``xfer.sweep``.
No ``from __future__ import annotations`` here: Hydra execs this module outside sys.modules, where
dataclasses cannot resolve string annotations.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class XferLauncherConf:
    _target_: str = "hydra_plugins.xfer_launcher.xfer_launcher.XferLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="xfer", node=XferLauncherConf, provider="xfer")


class XferLauncher(Launcher):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from xfer import sweep

        return sweep.launch(self.hydra_context, self.task_function, self.config, job_overrides, initial_job_idx)
