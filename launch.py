"""xfer's entry point: ``python launch.py -m pretrain=densecl,regioncl_d seed=0-4``.

Hydra composes one config per trial from conf/; the ``xfer`` launcher (hydra_plugins/) checks the
whole sweep before running any of it, runs each trial through ``xfer.trial``, and writes the table.
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from xfer import cli


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict:
    from xfer import trial
    from xfer.sweep import report_problems
    from xfer.validate import InputError

    hc = HydraConfig.get()
    try:
        return trial.run(cfg, hc.runtime.output_dir, hc.job.override_dirname)
    except InputError as e:
        report_problems(e.problems)
        raise SystemExit(2) from None


if __name__ == "__main__":
    sys.argv = cli.prepare_argv(sys.argv)
    main()
