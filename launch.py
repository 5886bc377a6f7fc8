"""xfer's entry point: ``python launch.py -m pretrain=densecl,regioncl_d seed=0-4``.

Hydra composes one config per trial from conf/; the ``xfer`` launcher (hydra_plugins/) checks the
whole sweep before running any of it, runs the trials on this node's GPUs (``xfer.launch.local``) or submits
them to SLURM (``xfer.launch.slurm``), and writes the table. Without ``-m`` it runs one trial the same way.
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from xfer import cli


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict:
    from xfer.launch import sweep

    hc = HydraConfig.get()
    return sweep.run_single(cfg, hc.runtime.output_dir, hc.overrides.task)


if __name__ == "__main__":
    sys.argv = cli.prepare_argv(sys.argv)
    try:
        main()
    except KeyboardInterrupt:  # before or after the trials (while they run, the local runner stops them itself)
        print("\ninterrupted: finished trials are kept and records are written whole; run the same command again "
              "to go on", file=sys.stderr)  # fmt: skip
        raise SystemExit(130) from None
