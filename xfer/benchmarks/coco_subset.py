"""A low-data COCO training file: a fraction of ``instances_train2017.json``'s images, with their annotations.

DenseCL's ``train_net.py`` registers ``coco_2017_train_0.1`` on ``instances_train2017_0.1.json`` but publishes
neither the file nor how it was sampled. ``python -m xfer coco-subset`` writes one that anyone can remake:
images drawn uniformly at random without replacement (NumPy's ``default_rng(seed)`` over the image ids in
ascending order, so the draw does not depend on the file's order), all of each drawn image's annotations
(crowd regions too), every category kept, so the category list, and with it the recipe's ``NUM_CLASSES``, is
train2017's. The seed and fraction go into the file's ``info``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from xfer.store.files import write_text_atomic

SOURCE = Path("coco/annotations/instances_train2017.json")  # under the datasets root (detectron2's layout)


def target(root: Path, fraction: float) -> Path:
    """Where the subset of ``fraction`` lives: ``instances_train2017_<fraction>.json`` beside the full file
    (``coco_2017_train_0.1`` reads the one of 0.1)."""
    return Path(root) / SOURCE.with_name(f"instances_train2017_{fraction:g}.json")


def subset(coco: dict, fraction: float, seed: int) -> dict:
    """The instances dict restricted to round(fraction × images) images drawn with ``seed``, and their annotations
    (``fraction`` in (0, 1): :func:`write` checks it before reading anything)."""
    ids = np.array(sorted(i["id"] for i in coco["images"]))
    n = max(1, round(fraction * len(ids)))
    keep = set(np.random.default_rng(seed).choice(ids, size=n, replace=False).tolist())
    out = {k: v for k, v in coco.items() if k not in ("images", "annotations")}
    out["info"] = {**coco.get("info", {}), "xfer_subset": {"of": SOURCE.name, "fraction": fraction, "seed": seed,
                                                           "images": n}}  # fmt: skip
    out["images"] = [i for i in coco["images"] if i["id"] in keep]
    out["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    return out


def write(root: Path, fraction: float, seed: int, force: bool = False) -> tuple[Path, dict]:
    """Write the subset under ``root`` (atomically; an existing file is kept unless ``force``)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction {fraction}: between 0 and 1 (exclusive)")
    src, dst = Path(root) / SOURCE, target(root, fraction)
    if not src.is_file():
        raise FileNotFoundError(f"{src} is missing: the subset is drawn from COCO's train2017 instances file")
    if dst.exists() and not force:
        raise FileExistsError(f"{dst} exists; pass --force to replace it (trials trained on it would no longer "
                              "match its content)")  # fmt: skip
    try:
        coco = json.loads(src.read_bytes())
    except ValueError as e:
        raise ValueError(f"{src}: not readable JSON ({e})") from None
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list) for k in ("images", "annotations",
                                                                                      "categories")):  # fmt: skip
        raise ValueError(f"{src}: not a COCO instances file (it needs lists 'images', 'annotations', 'categories')")
    sub = subset(coco, fraction, seed)
    write_text_atomic(dst, json.dumps(sub))
    return dst, sub
