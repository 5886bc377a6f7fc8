"""The smoke's COCO-format dataset: the shape scenes of ``scenes``, annotated as COCO instances.

Each object gets its shape's outline as a polygon (exact for squares, triangles and crosses; a 24-gon for
discs) in COCO's continuous coordinates (pixel x covers [x, x + 1)), its box and its area as pycocotools
computes them; the tiny objects VOC would call difficult become crowd regions (``iscrowd: 1``, RLE), as COCO
has them. Category ids are COCO-like, not contiguous (1, 3, 5, ...), so the id mapping is exercised, and they go
round the colours first (:data:`ORDER`), so that a mapping off by one gives every class another colour (which a
short training tells apart well before shape; the scenes' own class order changes shape first, and an off-by-one
there kept most of the AP). Files follow detectron2's COCO layout (``coco/<split>/``,
``coco/annotations/instances_<split>.json``).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from pathlib import Path

from xfer.benchmarks.coco import SPLITS
from xfer.benchmarks.voc import VOC_CLASSES
from xfer.smoke.scenes import COLOURS, SHAPES, Deck, made_once, scene

# scene class c (xfer.smoke.scenes: COLOURS[c // 4], SHAPES[c % 4]) in id order: every colour's disc, then squares, ...
ORDER = [colour * len(SHAPES) + shape for shape in range(len(SHAPES)) for colour in range(len(COLOURS))]
CATEGORY_ID = {cls: 2 * j + 1 for j, cls in enumerate(ORDER)}  # scene class -> COCO category id
CATEGORIES = [{"id": CATEGORY_ID[cls], "name": VOC_CLASSES[cls], "supercategory": "shape"} for cls in ORDER]


def polygon(shape: str, box: tuple[int, int, int, int]) -> list[float]:
    """The outline ``scenes.draw_shape`` fills inside ``box`` (inclusive pixel corners), as one COCO polygon."""
    x0, y0, x1, y1 = box
    left, top, right, bottom = x0, y0, x1 + 1, y1 + 1
    if shape == "square":
        return [left, top, right, top, right, bottom, left, bottom]
    if shape == "triangle":
        return [(left + right) / 2, top, right, bottom, left, bottom]
    if shape == "disc":
        cx, cy, rx, ry = (left + right) / 2, (top + bottom) / 2, (right - left) / 2, (bottom - top) / 2
        return [v for k in range(24) for v in (cx + rx * math.cos(2 * math.pi * k / 24),
                                               cy + ry * math.sin(2 * math.pi * k / 24))]  # fmt: skip
    if shape == "cross":
        w, h = x1 - x0, y1 - y0
        a, b, c, d = x0 + w // 3, x1 - w // 3 + 1, y0 + h // 3, y1 - h // 3 + 1
        return [a, top, b, top, b, c, right, c, right, d, b, d, b, bottom, a, bottom, a, d, left, d, left, c, a, c]
    raise ValueError(f"no shape {shape!r}")


def instance(ann_id: int, image_id: int, cls: int, crowd: bool, box: tuple, width: int, height: int) -> dict:
    """One COCO annotation: a polygon, or for a crowd region its RLE; area as pycocotools measures the mask."""
    from pycocotools import mask as mask_utils

    poly = polygon(SHAPES[cls % len(SHAPES)], box)
    rle = mask_utils.merge(mask_utils.frPyObjects([poly], height, width))
    seg: object = [poly]
    if crowd:
        seg = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    x0, y0, x1, y1 = box
    return {"id": ann_id, "image_id": image_id, "category_id": CATEGORY_ID[cls], "iscrowd": int(crowd),
            "bbox": [x0, y0, x1 + 1 - x0, y1 + 1 - y0], "area": float(mask_utils.area(rle)), "segmentation": seg}


def write_split(root: Path, name: str, count: int, size: tuple[int, int], rng: random.Random) -> None:
    """``count`` scenes as detectron2's COCO dataset ``name`` (its folder and instances JSON) under ``root``."""
    image_dir, json_file = (root / p for p in SPLITS[name])
    image_dir.mkdir(parents=True, exist_ok=True)
    json_file.parent.mkdir(parents=True, exist_ok=True)
    deck, plain, images, annotations = Deck(rng), set(), [], []
    for i in range(count):
        w, h = rng.randint(*size), rng.randint(*size)
        img, objects = scene(rng, w, h, [deck.deal() for _ in range(rng.randint(1, 4))], plain)
        image_id = 1000 + i
        img.save(image_dir / f"{image_id:012d}.jpg", quality=92)
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": w, "height": h})
        for cls, crowd, box in objects:
            annotations.append(instance(len(annotations) + 1, image_id, cls, crowd, box, w, h))
    json_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))


def ensure_dataset(root: Path, images: Mapping[str, int], size: tuple[int, int], seed: int = 0) -> Path:
    """Generate the COCO-format scenes under ``root`` unless a complete copy made from the same spec is there."""

    def write(folder: Path, rng: random.Random) -> None:
        for name, count in images.items():
            write_split(folder, name, int(count), tuple(size), rng)

    return made_once(root, {"coco": dict(images), "size": list(size), "seed": seed, "ids": "colour-first"}, write)
