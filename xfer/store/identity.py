"""A trial's identity: everything that decides its result, and nothing else.

A trial is what it runs, not how its command line was spelled. Its identity has five parts
(:class:`Identity`), recorded in ``trial.yaml`` by the launcher and in ``result.json`` by the trial:

- ``recipe``: the detectron2 config the trial trains with, fully resolved (detectron2's defaults, then the
  recipe's parts in ``xfer.trial.recipe.MERGE_ORDER``) and flattened to ``KEY.SUB: value``, leaving out what
  only says where or how it runs (:data:`RUN_ONLY`: output dir, device, checkpoint period, the per-trial seed
  field, the weights' path);
- ``weights``: the checkpoint's content (sha256) and how it is converted (format, prefix);
- ``data``: per dataset the trial reads, a digest of its content files (image lists and annotations; for a
  COCO subset its JSON, which holds the drawn ids);
- ``evaluator``: which evaluator and the versions of the libraries it computes with;
- ``seed``.

Change any of them and the trial is another one; change anything else (``benchmark.trials``, descriptions,
published numbers, pace, paths, spellings, cluster and trial options) and it is the same trial. Two
identities are compared key by key (:func:`changes`): a recipe key only one side has (a detectron2 upgrade
that adds keys with their defaults) is not a change; a changed value is.

Folder and row names stay readable: ``<output_root>/<benchmark>/<setting>/w-<weights id>/seed<N>``, where the
setting is ``<backbone>_<pretrain>`` plus what the trial changes against its plain choices (a group choice
such as ``experiment=amp``, a recipe value such as ``SOLVER.BASE_LR=0.01``), worked out by the launcher
(``xfer.launch.identify``). The name is for people; the identity decides. A finished trial whose recorded
identity differs from the one its folder is launched for now is *stale* (``xfer.store.state``).

This module imports neither torch nor OmegaConf: the launcher, collect and the conversion cache share it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

ID_CHARS = 12  # hex digits of a sha256 in folder names and tables (48 bits: no collision in practice)
DIGESTS = "sha256"  # folder under paths.cache holding one digest per file state
NO_WEIGHTS = "none"  # the digest and weights id of a trial without weights (random init); not hex, so no
# checkpoint's id is ever this
UNREADABLE = "w-unknown"  # folder level of weights that cannot be hashed; such trials never run (see xfer.launch.triage.check)
MAX_SETTING_CHARS = 96
IDENTITY = "identity.json"  # in a setting's w-<id> folder: the identity (less the seed) its latest launch asked for

# detectron2 keys that say where or how a trial runs, never what it measures: left out of the recipe part.
RUN_ONLY = ("OUTPUT_DIR", "MODEL.DEVICE", "SOLVER.CHECKPOINT_PERIOD", "SEED", "MODEL.WEIGHTS")
# ... and the option that sets each of them instead (a ``d2`` override of them would be overwritten per trial).
ABSENT = "absent"  # the data digest of a dataset none of whose content files is there: unknown, not changed
SET_BY = {"OUTPUT_DIR": "output_root=DIR", "MODEL.DEVICE": "trial.device=cpu|cuda", "SEED": "seed=N",
          "MODEL.WEIGHTS": "pretrain.weights=/path/to/checkpoint"}  # fmt: skip


def flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    """``{"SOLVER": {"BASE_LR": 0.02}}`` -> ``{"SOLVER.BASE_LR": 0.02}``; tuples become lists (as in JSON)."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = _plain(value)
    return out


def _plain(value: object) -> object:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def resolve(defaults: Mapping[str, object], parts: list[Mapping]) -> dict[str, object]:
    """The flattened recipe detectron2 would build: ``defaults`` (flattened ``get_cfg()``), each part (nested
    dicts, merge order) overlaid, :data:`RUN_ONLY` keys left out."""
    recipe = dict(defaults)
    for part in parts:
        recipe.update(flatten(part))
    return {k: v for k, v in sorted(recipe.items()) if k not in RUN_ONLY}


def show(value: object) -> str:
    """A value as the setting's name and the stale messages show it: JSON, without spaces."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True).strip('"') if not isinstance(value, str) else value


@dataclass(frozen=True)
class Identity:
    """What decides a trial's result (see the module's docstring). ``seed`` None: the identity of a setting's
    weights folder, shared by its seeds (``identity.json``)."""

    recipe: dict[str, object]
    weights: dict[str, object]  # sha256 (NO_WEIGHTS for random init), format, prefix
    data: dict[str, str]  # dataset name -> content digest
    evaluator: dict[str, object]  # name, and libraries: {distribution: version}
    seed: int | None = None

    def record(self) -> dict:
        """The identity as ``trial.yaml``, ``identity.json`` and ``result.json`` keep it, with its digest."""
        body = asdict(self)
        return {"digest": digest(body), **body}

    def of_seed(self, seed: int | None) -> Identity:
        return Identity(self.recipe, self.weights, self.data, self.evaluator, seed)


def digest(record: Mapping) -> str:
    """sha256 of an identity's parts (its ``digest`` field, if any, left out), as canonical JSON."""
    body = {k: v for k, v in record.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def changes(old: Mapping | None, new: Mapping, with_seed: bool = True) -> list[str]:
    """What differs between a recorded identity (``old``) and the one launched now (``new``), in words, e.g.
    ``SOLVER.BASE_LR 0.02 → 0.01``, ``annotations of voc_2007_test changed``; [] when they are the same trial.
    ``old`` None (a result from an xfer that kept no identity) cannot be matched: one line says so."""
    if old is None:
        return ["no identity recorded (a result of an older xfer): what it ran cannot be compared"]
    skip = {"digest"} if with_seed else {"digest", "seed"}
    if all(old.get(k) == new.get(k) for k in (old.keys() | new.keys()) - skip):  # the common case, without hashing
        return []
    found = []
    a, b = old.get("recipe") or {}, new.get("recipe") or {}
    found += [f"{k} {show(a[k])} → {show(b[k])}" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
    wa, wb = old.get("weights") or {}, new.get("weights") or {}
    if wa.get("sha256") != wb.get("sha256"):
        found.append(f"weights {str(wa.get('sha256'))[:ID_CHARS]} → {str(wb.get('sha256'))[:ID_CHARS]}")
    found += [f"weights {k} {show(wa.get(k))} → {show(wb.get(k))}" for k in sorted((wa.keys() | wb.keys()) - {"sha256"})
              if wa.get(k) != wb.get(k)]  # fmt: skip
    da, db = old.get("data") or {}, new.get("data") or {}
    found += [f"annotations of {name} changed" for name in sorted(da.keys() & db.keys())
              if da[name] != db[name] and ABSENT not in (da[name], db[name])]  # gone since: a finished trial stands
    found += [f"datasets {', '.join(sorted(da))} → {', '.join(sorted(db))}"] if da.keys() != db.keys() else []
    ea, eb = old.get("evaluator") or {}, new.get("evaluator") or {}
    if ea != eb:
        found.append(f"evaluator {_evaluator(ea)} → {_evaluator(eb)}")
    if with_seed and old.get("seed") != new.get("seed"):
        found.append(f"seed {old.get('seed')} → {new.get('seed')}")
    return found


def _evaluator(e: Mapping) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in sorted((e.get("libraries") or {}).items()))
    return f"{e.get('name')}" + (f" ({libs})" if libs else "")


def setting_dirname(backbone: str, pretrain: str, extras: str = "") -> str:
    """Folder of a setting: ``r50_densecl``, plus what it changes against its plain choices (hashed when long)."""
    name = f"{backbone}_{pretrain}"
    if extras:
        extra = extras.replace("/", "|")
        if len(extra) > MAX_SETTING_CHARS:
            extra = extra[:60] + "~" + hashlib.sha256(extras.encode()).hexdigest()[:12]
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
