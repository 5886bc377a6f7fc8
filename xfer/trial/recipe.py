"""The detectron2 config of a trial, composed from the Hydra config groups.

The recipe's numbers live in ``conf/`` only. They are merged onto detectron2's defaults in a fixed
order, later parts winning (:data:`MERGE_ORDER`): ``benchmark.d2`` (the seed's base recipe), ``backbone.d2``
(DEPTH), ``pretrain.input.d2`` (the pretrain's input convention), ``benchmark.by_input.<input name>`` (what
the benchmark's upstream recipe changes for that input convention only, e.g. the OpenSelfSup COCO C4
``_moco`` configs' ``INPUT.MAX_SIZE_TRAIN: 1200``; absent for other conventions), then the user's own ``d2``
overrides. Nothing here depends on the number of GPUs: detectron2's IMS_PER_BATCH is the global batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from xfer import d2compat

MERGE_ORDER = ("benchmark.d2", "backbone.d2", "pretrain.input.d2", "benchmark.by_input.{input}", "d2")
# ``{input}``: the pretrain's input convention, ``pretrain.input.name`` (conf/input/<name>.yaml)
_KEPT: dict[int, list[dict]] = {}  # id of a config: its parts, while :func:`kept` holds it


@contextlib.contextmanager
def kept(cfg: DictConfig) -> Iterator[None]:
    """Within the block, :func:`d2_parts` of ``cfg`` is converted once and the same dicts are returned (read them,
    do not change them); the config must not change inside. Converting the parts takes milliseconds, and the
    launcher reads a dozen recipe values per trial family (checks, identity, plan)."""
    mine = id(cfg) not in _KEPT
    if mine:
        try:
            _KEPT[id(cfg)] = d2_parts(cfg)
        except Exception:  # a recipe that does not resolve: each reader fails as it would  # noqa: BLE001
            mine = False
    try:
        yield
    finally:
        if mine:
            del _KEPT[id(cfg)]


def d2_parts(cfg: DictConfig) -> list[dict]:
    """The detectron2 overrides of a composed config, in merge order, as plain dicts (parts a config lacks,
    e.g. a ``by_input`` entry for another input convention, are left out)."""
    if id(cfg) in _KEPT:
        return _KEPT[id(cfg)]
    return [part for _, part in named_parts(cfg)]


def named_parts(cfg: DictConfig) -> list[tuple[str, dict]]:
    """:func:`d2_parts` with the config key each part comes from (``benchmark.d2``, ``d2``, ...): for messages."""
    keys = _part_keys(OmegaConf.select(cfg, _INPUT_NAME))
    parts = [(key, OmegaConf.select(cfg, key, default=None)) for key in keys]
    return [(key, OmegaConf.to_container(p, resolve=True)) for key, p in parts if p is not None]


_INPUT_NAME = "pretrain.input.name"


def _part_keys(input_name: str | None) -> list[str]:
    """:data:`MERGE_ORDER` for a pretrain of that input convention (none: its ``{input}`` parts left out)."""
    return [k.format(input=input_name) for k in MERGE_ORDER if input_name is not None or "{input}" not in k]


def plain_parts(cfg: Mapping) -> list[dict]:
    """:func:`d2_parts` of a resolved config as plain dicts (a ``trial.yaml``'s ``cfg``), without OmegaConf: a
    collect of thousands of unfinished trials reads one value of each."""

    def at(dotted: str):
        node = cfg
        for key in dotted.split("."):
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]
        return node

    return [p for p in map(at, _part_keys(at(_INPUT_NAME))) if p is not None]


def value(cfg: DictConfig | Mapping, dotted: str, default=None):
    """A detectron2 key (``SOLVER.MAX_ITER``) as :func:`build` will merge it, the last part that sets it winning,
    without importing detectron2: for the launcher's checks and plan, which must see a ``by_input`` or
    ``backbone.d2`` value as the trial will (``cfg``: composed, or plain as :func:`plain_parts` reads it)."""
    found = default
    for part in d2_parts(cfg) if isinstance(cfg, DictConfig) else plain_parts(cfg):
        node = part
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            found = node
    return found


def build(cfg: DictConfig, weights: Path | None, output_dir: Path, device: str):
    """detectron2 CfgNode for one trial: recipe, seed, weights, output dir and device. ``weights`` None: random
    init, detectron2's own initialisation (its ``MODEL.WEIGHTS ''`` loads nothing)."""
    d2compat.ensure()
    from detectron2.config import CfgNode, get_cfg

    d2 = get_cfg()
    for part in d2_parts(cfg):
        d2.merge_from_other_cfg(CfgNode(part))
    d2.MODEL.WEIGHTS = "" if weights is None else str(weights)
    d2.OUTPUT_DIR = str(output_dir)
    d2.SEED = int(cfg.seed)
    d2.MODEL.DEVICE = device
    period = OmegaConf.select(cfg, "cluster.checkpoint_period")
    if period:  # how often to save is the cluster's business, not the recipe's (results do not change)
        d2.SOLVER.CHECKPOINT_PERIOD = int(period)
    d2.freeze()
    return d2


def d2_defaults(cache: Path) -> dict[str, object]:
    """detectron2's own defaults (``get_cfg()``), flattened: the base every recipe is resolved on, for the
    trial's identity (``xfer.store.identity.resolve``). Kept as JSON under ``cache`` per detectron2 install
    (its version and the state of its ``config/defaults.py``), so a launch imports detectron2, and torch with
    it, only the first time; a damaged entry is rebuilt."""
    import importlib.metadata
    import importlib.util
    import json

    from xfer.store import digests, files, identity

    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.origin:
        raise ModuleNotFoundError("detectron2 is not installed: run `make setup` (README, Quickstart)")
    source = Path(spec.origin).parent / "config" / "defaults.py"
    version = importlib.metadata.version("detectron2") if _has_dist("detectron2") else "?"
    entry = digests.state_entry(Path(cache) / "d2_defaults", (*digests.file_state(source), version)).with_suffix(".json")
    kept = files.read_json(entry)
    if isinstance(kept, dict) and kept:
        return kept
    d2compat.ensure()
    from detectron2.config import get_cfg

    found = identity.flatten(get_cfg())
    entry.parent.mkdir(parents=True, exist_ok=True)
    files.write_text_atomic(entry, json.dumps(found, sort_keys=True))
    return found


def _has_dist(name: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def resolved(cfg: DictConfig, defaults: dict[str, object]) -> dict[str, object]:
    """The trial's recipe as its identity records it: :func:`d2_parts` on ``defaults``, flattened, without
    what only says where or how it runs (``xfer.store.identity.RUN_ONLY``)."""
    from xfer.store import identity

    return identity.resolve(defaults, d2_parts(cfg))
