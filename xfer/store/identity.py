"""A trial's identity: what changes its result names its folder, and nothing else does.

A trial lives at ``<output_root>/<benchmark>/<setting>/w-<weights id>/seed<N>/``.

- The setting is ``<backbone>_<pretrain.name>`` plus every command-line override that can change what is
  measured (``+d2.*``, ``benchmark.*`` keys, ``backbone.*``, ``pretrain.format``, ``input@pretrain.input``,
  ``+experiment=amp``, keys xfer does not know), sorted. Left out, by rule rather than by a list kept by
  hand: what says how or where a trial runs (``cluster`` and ``cluster.*``, ``trial.*``, ``paths.*``,
  ``hydra.*``, ``output_root``, ``plan``), the seed (a level of its own), the group choices the name shows
  already (``benchmark``, ``backbone``, ``pretrain``) and the pretrain's descriptive keys (``name``,
  ``label``, ``source``, ``weights``, ``trust``, ``sha256``, ``published*``). A new ``cluster.*`` or
  ``trial.*`` option thus never renames a setting, and anything unknown stays in the name (a needless
  retrain is better than a pooled result).
- The weights id is the start of the checkpoint's sha256: its content, not its path, is what was
  measured. A copy of the file elsewhere is the same trial (nothing retrains); another checkpoint under
  the same pretrain is another trial, which never reuses or pools the first one's results or checkpoints.
- A trial without a checkpoint (random init, ``pretrain.weights`` null) has the weights id
  :data:`NO_WEIGHTS`, where a digest would be: its folder is ``w-none`` and its table's weights say ``none``.

A real checkpoint is hundreds of MB, so its digest is read once per process and kept on disk (under
``paths.cache``), keyed by the file's resolved path, size and modification time: planning a sweep again
reads no checkpoint. This module imports neither torch nor OmegaConf (the launcher, collect and the
conversion cache share it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

ID_CHARS = 12  # hex digits of the sha256 in folder names and tables (48 bits: no collision in practice)
DIGESTS = "sha256"  # folder under paths.cache holding one digest per (resolved path, size, mtime_ns)
NO_WEIGHTS = "none"  # the digest and weights id of a trial without weights (random init); not hex, so no
# checkpoint's id is ever this
UNREADABLE = "w-unknown"  # folder level of weights that cannot be hashed; such trials never run (see sweep.check)
MAX_SETTING_CHARS = 96

RUNS_HOW = {"cluster", "trial", "paths", "hydra", "output_root", "plan", "seed"}  # top-level keys and namespaces
NAMED = {"benchmark", "backbone", "pretrain"}  # group choices the setting's name shows
DESCRIPTIVE = {"name", "label", "source", "weights", "trust", "sha256"}  # pretrain keys that describe, or are
# the weights level; ``published*`` too
_OVERRIDE = re.compile(r"^(?:~|\+\+|\+)?([^=]+?)(?:=.*)?$", re.DOTALL)


def override_key(line: str) -> str:
    """The config path an override sets: ``++cluster.sbatch.qos=x`` -> ``cluster.sbatch.qos``; a group
    choice with a package, ``input@pretrain.input=bgr_msra``, -> ``pretrain.input`` (where it lands)."""
    m = _OVERRIDE.match(line.strip())
    key = m.group(1).strip() if m else line
    return key.split("@", 1)[1] if "@" in key else key


def changes_result(key: str) -> bool:
    """Whether an override of ``key`` can change what a trial measures (conservative: unknown keys can)."""
    parts = key.split(".")
    if parts[0] in RUNS_HOW or key in NAMED:
        return False
    return not (parts[0] == "pretrain" and len(parts) > 1 and (parts[1] in DESCRIPTIVE
                                                             or parts[1].startswith("published")))  # fmt: skip


def setting_overrides(task: Iterable[str]) -> str:
    """The overrides that name a setting, as Hydra writes an override dirname: sorted, comma-joined."""
    return ",".join(sorted(line for line in task if changes_result(override_key(line))))


def setting_dirname(backbone: str, pretrain: str, overrides: str = "") -> str:
    """Folder of a setting: ``r50_densecl``, plus the overrides that name it (hashed when too long)."""
    name = f"{backbone}_{pretrain}"
    if overrides:
        extra = overrides.replace("/", "|")
        if len(extra) > MAX_SETTING_CHARS:
            extra = extra[:60] + "~" + hashlib.sha256(overrides.encode()).hexdigest()[:12]
        name += "," + extra
    return name


def weights_id(sha256: str | None) -> str:
    """The short weights id of tables and folders ("" when unknown, e.g. a result of an older xfer)."""
    return (sha256 or "")[:ID_CHARS]


def weights_dirname(sha256: str | None) -> str:
    return f"w-{weights_id(sha256)}" if sha256 else UNREADABLE


def trial_dir(sweep_dir: Path, setting: str, sha256: str | None, seed: object) -> Path:
    """``<sweep_dir>/<setting>/w-<weights id>/seed<N>``: the one place a trial's folder is derived."""
    return Path(sweep_dir) / setting / weights_dirname(sha256) / f"seed{seed}"


def no_weights(cfg) -> bool:
    """Whether the trial has no checkpoint and trains from detectron2's own initialisation (random init).

    The one rule, so that every stage agrees: ``pretrain.weights`` is null (``pretrain=scratch``, or any
    pretrain with ``pretrain.weights=null``). Such a trial is hashed, converted and checked for nothing; its
    weights id is ``identity.NO_WEIGHTS``. A path that cannot be resolved is not "no weights": the checks
    name it instead of training from random init by mistake."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return cfg.pretrain.weights is None
    except OmegaConfBaseException:
        return False
