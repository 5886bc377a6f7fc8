"""Generated inputs of the smoke benchmarks: a VOC-format dataset and a checkpoint per pretrain.

The smoke must run the real pipeline on a CPU without downloads, and its numbers must mean something:
detectron2's VOC loader and evaluator read generated scenes a small detector learns (``scenes``), and each
pretrain's checkpoint, in its method's own file layout (``layouts``), holds either the cached smoke
pretraining (``pretraining``: features that fine-tuning builds on) or random weights (``smoke_fast``, which
only exercises the pipeline). A ``scratch`` pretrain (no weights) needs only the dataset.

Each file is made once into the cache, written atomically, and remade when what it was made from changes
(its spec is stored beside it). torch is imported only to make weights: a launcher finding them made
already need not pay its start-up (see ``xfer.trial.devices``).
"""

from __future__ import annotations

import json
import pickle
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from xfer import benchmarks
from xfer.smoke import coco_scenes, layouts, pretraining, scenes
from xfer.smoke.scenes import ensure_dataset
from xfer.store.identity import no_weights

__all__ = ["coco_scenes", "ensure_dataset", "ensure_weights", "layouts", "prepare", "pretraining", "scenes"]


def ensure_weights(path: Path, layout: str, spec: Mapping, make: Callable[[], Mapping]) -> Path:
    """Write the tensors ``make()`` returns at ``path`` in ``layout`` unless a file made from ``spec`` is there.

    A file made from another spec (its ``.spec`` beside it says so) is remade; a file without one is not ours
    (``pretrain.weights=`` a user's own checkpoint) and is never touched."""
    path, key = Path(path), json.dumps({**spec, "layout": layout}, sort_keys=True)
    made_from = path.with_name(path.name + ".spec")
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists() and (not made_from.exists() or made_from.read_text() == key):
            return path
        import torch

        obj = layouts.wrap(make(), layout)
        tmp = path.with_name(path.name + ".partial")
        if layout in layouts.PICKLED:
            with open(tmp, "wb") as f:
                pickle.dump(obj, f)
        else:
            torch.save(obj, tmp)
        tmp.replace(path)
        made_from.write_text(key)
    return path


def _pretraining_spec(cfg: DictConfig) -> dict:
    """What the smoke pretraining of this backbone trains: its model (the VOC smoke's detector, whichever
    benchmark fine-tunes it, so that the VOC and COCO smokes share one cached pretraining) under its solver."""
    gen = cfg.benchmark.smoke
    parts = [gen.pretraining.model, cfg.backbone.d2, gen.pretraining.d2]
    plain = [OmegaConf.create(OmegaConf.to_container(p, resolve=True)) for p in parts]  # unstructured: keys may add
    d2 = OmegaConf.to_container(OmegaConf.merge(*plain))
    return {"d2": d2, "data": OmegaConf.to_container(gen.pretraining.data, resolve=True), "version": scenes.VERSION}


def ours(path: Path, cache: Path) -> bool:
    """Whether the smoke may make ``path``: only inside ``paths.cache``, where its defaults put what it makes. A
    path given elsewhere (``pretrain.weights=``, ``benchmark.datasets_root=``) is the user's: a mistyped one is
    reported missing by the checks, never filled with generated data or random weights."""
    return Path(path).resolve().is_relative_to(Path(cache).resolve())


def prepare(cfg: DictConfig) -> None:
    """Make the dataset and, unless the pretrain is scratch (no weights), the pretrain's checkpoint, where they
    are the cache's (:func:`ours`)."""
    gen, cache = cfg.benchmark.smoke, Path(cfg.paths.cache)
    scenes_of = coco_scenes if benchmarks.format_of(cfg) == "coco" else scenes  # the same scenes, either format
    used = set(cfg.benchmark.d2.DATASETS.TRAIN) | set(cfg.benchmark.d2.DATASETS.TEST)
    images = {name: n for name, n in gen.images.items() if name in used}  # a derived conf's recipe may use others
    if ours(Path(cfg.benchmark.datasets_root), cache):
        scenes_of.ensure_dataset(Path(cfg.benchmark.datasets_root), images, tuple(gen.image_size))
    if no_weights(cfg) or not ours(Path(cfg.pretrain.weights), cache):  # scratch: no checkpoint to make
        return
    layout = gen.layouts.get(cfg.pretrain.name, "torchvision")
    depth = int(cfg.backbone.d2.MODEL.RESNETS.DEPTH)
    resnets = cfg.benchmark.d2.MODEL.RESNETS
    if gen.get("pretraining"):  # every method the same pretrained ResNet, each in its own file layout
        spec = _pretraining_spec(cfg)
        source = pretraining.ensure(Path(cfg.paths.cache) / "smoke_pretraining", spec)

        def make() -> Mapping:
            import torch

            return torch.load(source, map_location="cpu", weights_only=True)

        ensure_weights(Path(cfg.pretrain.weights), layout, {"pretrained": source.name}, make)
        return
    seed = zlib.crc32(cfg.pretrain.name.encode())  # random weights: each method its own, stable across runs
    widths = (resnets.STEM_OUT_CHANNELS, resnets.RES2_OUT_CHANNELS, resnets.WIDTH_PER_GROUP)
    ensure_weights(Path(cfg.pretrain.weights), layout, {"random": [depth, *widths, seed]},
                   lambda: layouts.torchvision_resnet(depth, *widths, seed))  # fmt: skip

