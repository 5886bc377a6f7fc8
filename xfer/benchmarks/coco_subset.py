"""A low-data COCO training file: a fraction of ``instances_train2017.json``'s images, with their annotations.

DenseCL's ``train_net.py`` registers ``coco_2017_train_0.1`` on ``instances_train2017_0.1.json`` but publishes
neither the file nor how it was sampled. ``python -m xfer coco-subset`` writes one that anyone can remake, with
any library version: the n = round(fraction × images) images whose key, the SHA-256 of the ASCII text
``"<seed>:<image id>"``, is smallest (bytes compared; the id breaks a tie), so the draw depends on the seed and the
ids only, not on the file's order or on a random-number library's stream. It keeps all of each drawn image's
annotations (crowd regions too) and every category, so the category list, and with it the recipe's
``NUM_CLASSES``, is train2017's. The file's ``info`` records the seed, the fraction, the count, the rule and the
drawn ids' digest (:func:`ids_sha256`); a trial's data identity hashes the file, so it holds them too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from xfer.store.files import write_text_atomic

SOURCE = Path("coco/annotations/instances_train2017.json")  # under the datasets root (detectron2's layout)


def target(root: Path, fraction: float) -> Path:
    """Where the subset of ``fraction`` lives: ``instances_train2017_<fraction>.json`` beside the full file
    (``coco_2017_train_0.1`` reads the one of 0.1)."""
    return Path(root) / SOURCE.with_name(f"instances_train2017_{fraction:g}.json")


DRAW = "smallest sha256('<seed>:<image id>')"  # the rule, as the file's info names it


def key(seed: int, image_id: int) -> bytes:
    """An image's place in the draw of ``seed``: the SHA-256 of ``"<seed>:<image id>"`` (ASCII decimals)."""
    return hashlib.sha256(f"{seed}:{image_id}".encode("ascii")).digest()


def drawn(ids: Iterable[int], n: int, seed: int) -> list[int]:
    """The ``n`` ids with the smallest keys (:func:`key`), ascending."""
    return sorted(sorted(ids, key=lambda i: (key(seed, i), i))[:n])


def ids_sha256(ids: Iterable[int]) -> str:
    """The digest of a set of image ids: SHA-256 of the ids ascending, as decimals, one per line (no newline at
    the end)."""
    return hashlib.sha256("\n".join(str(i) for i in sorted(ids)).encode("ascii")).hexdigest()


def subset(coco: dict, fraction: float, seed: int) -> dict:
    """The instances dict restricted to round(fraction × images) images drawn with ``seed`` (:func:`drawn`), and
    their annotations (``fraction`` in (0, 1): :func:`write` checks it before reading anything)."""
    ids = [i["id"] for i in coco["images"]]
    n = max(1, round(fraction * len(ids)))
    keep = set(drawn(ids, n, seed))
    out = {k: v for k, v in coco.items() if k not in ("images", "annotations")}
    out["info"] = {**coco.get("info", {}), "xfer_subset": {"of": SOURCE.name, "fraction": fraction, "seed": seed,
                                                           "images": n, "draw": DRAW, "ids_sha256": ids_sha256(keep)}}  # fmt: skip
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
    if not coco["images"]:
        raise ValueError(f"{src} lists no images: there is nothing to draw a subset from (is it the right file?)")
    if not all(isinstance(i, dict) and type(i.get("id")) is int for i in coco["images"]):
        raise ValueError(f"{src}: an image without an integer 'id'; the subset is drawn by image id")
    sub = subset(coco, fraction, seed)
    write_text_atomic(dst, json.dumps(sub))
    return dst, sub
