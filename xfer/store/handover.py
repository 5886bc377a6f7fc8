"""The launcher's hand-over to a trial: ``trial.yaml`` in its folder, the one thing every process of the trial
reads (started by ``xfer.launch.local`` or by SLURM).

It holds the composed config, resolved into plain values (``pretrain.sha256``: the weights' content the folder
was chosen for), the setting's name extras (what it changes against its plain choices), and the identity the
launcher worked out for the trial (``xfer.store.identity``), which the trial copies into its ``result.json``.
Plain YAML (libyaml when there): OmegaConf's own dumper was most of the time to submit a sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from xfer.store.files import JOB_CONFIG, write_text_atomic


@dataclass(frozen=True)
class Handover:
    cfg: dict
    overrides: str  # the setting's name extras (``xfer.launch.identify.Identifier.extras``)
    identity: dict | None  # None: written by an older xfer


def write(trial_dir: Path, cfg: dict, overrides: str, identity: dict | None) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump({"cfg": cfg, "overrides": overrides, "identity": identity}, Dumper=dumper, sort_keys=False)
    write_text_atomic(trial_dir / JOB_CONFIG, text)


def read(trial_dir: Path) -> Handover:
    """The trial's hand-over; OSError, yaml.YAMLError or KeyError when it cannot be read."""
    with open(Path(trial_dir) / JOB_CONFIG) as f:
        job = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return Handover(job["cfg"], job.get("overrides") or "", job.get("identity"))
