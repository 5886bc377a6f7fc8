"""Random COCO ground truth and detections, shared by tests/test_coco_eval.py and bench/coco_eval_speed.py.

The data aims at what can make two COCO evaluators disagree, not at realism: non-contiguous, unsorted
image and category ids; crowd annotations as uncompressed RLE and as polygons; multi-part polygons;
images without ground truth or without detections; ground-truth areas and detection boxes on and next to
the 32² and 96² area boundaries; scores rounded to two decimals (many ties) and exact duplicates; one
(image, category) with more than 100 detections; categories with no detection, with no ground truth, and
detections of a category the dataset does not list. Detections are COCO results as detectron2's
``instances_to_coco_json`` writes them: ``bbox`` (XYWH floats), ``score``, and for masks a compressed RLE
whose ``counts`` is a str.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_util

BOUNDARIES = (32.0**2, 96.0**2)


def polygon(rng: np.random.Generator, cx: float, cy: float, radius: float, w: int, h: int) -> list[float]:
    """A star-shaped polygon (3-10 vertices around a centre), clipped to the image, flat [x0, y0, x1, ...]."""
    k = int(rng.integers(3, 11))
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    r = radius * rng.uniform(0.6, 1.0, k)
    xs = np.clip(cx + r * np.cos(angles), 0, w)
    ys = np.clip(cy + r * np.sin(angles), 0, h)
    return np.round(np.stack([xs, ys], 1).reshape(-1), 2).tolist()


def uncompressed(rle: dict) -> dict:
    """The same mask as an uncompressed RLE (a list of run lengths), as COCO stores crowd regions."""
    flat = mask_util.decode(rle).reshape(-1, order="F")
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return {"size": list(rle["size"]), "counts": np.diff(np.concatenate([[0], change])).astype(int).tolist()}


def extent(polys: list[list[float]]) -> list[float]:
    xy = np.concatenate([np.reshape(p, (-1, 2)) for p in polys])
    x0, y0 = xy.min(0)
    x1, y1 = xy.max(0)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def shoelace(polys: list[list[float]]) -> float:
    total = 0.0
    for p in polys:
        x, y = np.reshape(p, (-1, 2)).T
        total += 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    return total


def dataset(seed: int, images: int = 6, categories: int = 5, gt_per_image: float = 3.0,
            dets_per_image: tuple[int, int] = (0, 40), size: tuple[int, int] = (24, 120), crowd: float = 0.1,
            masks: bool = True, crowded_group: bool = True, confusable: int = 0,
            undetected: bool = True, empty: float = 0.15, ties: bool = True) -> tuple[dict, list[dict]]:  # fmt: skip
    """(ground truth dict, detections) for one seed. ``masks``: polygons and RLE masks (needed for segm);
    without, boxes only (faster). ``crowded_group``: one (image, category) gets 100-130 detections.
    ``confusable``: when > 0, an image's detections that copy no object take one of that many random
    categories of the image (a detector's few wrong classes) rather than any category. ``undetected``: one
    category (with ground truth or not) has no detection, in every other dataset. ``empty``: the share of
    images without ground truth, and (drawn apart) of images without detections. ``ties``: some images get
    a :func:`tie_trap`."""
    rng = np.random.default_rng(seed)
    img_ids = rng.choice(np.arange(1, 10 * images + 10), images, replace=False).tolist()
    cat_ids = sorted(rng.choice(np.arange(1, 2 * categories + 3), categories, replace=False).tolist())
    cats = [{"id": int(c), "name": f"c{c}"} for c in rng.permutation(cat_ids)]
    weights = rng.dirichlet(np.full(categories, 0.7))  # a few frequent categories, some rare or absent
    imgs, anns, dets = [], [], []
    for img_id in img_ids:
        h, w = (int(v) for v in rng.integers(size[0], size[1] + 1, 2))
        imgs.append({"id": int(img_id), "height": h, "width": w, "file_name": f"{img_id}.jpg"})
        objects = []
        for _ in range(int(rng.poisson(gt_per_image)) if rng.random() >= empty else 0):
            cat = int(rng.choice(cat_ids, p=weights))
            radius = float(np.exp(rng.uniform(np.log(1.5), np.log(max(w, h) * 0.6))))
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            parts = [polygon(rng, cx, cy, radius, w, h) for _ in range(1 if rng.random() > 0.2 else 2)]
            if rng.random() < 0.2:  # a second part elsewhere
                parts[-1] = polygon(rng, rng.uniform(0, w), rng.uniform(0, h), radius / 2, w, h)
            bbox = extent(parts)
            area = shoelace(parts)
            if rng.random() < 0.2:  # on or next to an area boundary
                area = float(rng.choice(BOUNDARIES)) + float(rng.choice([0.0, -1e-9, 1e-9, -0.5, 0.5]))
            is_crowd = int(rng.random() < crowd)
            ann = {"id": len(anns) + 1, "image_id": int(img_id), "category_id": cat, "bbox": bbox, "area": area,
                   "iscrowd": is_crowd}  # fmt: skip
            if masks:
                ann["segmentation"] = parts
                if is_crowd and rng.random() < 0.6:
                    ann["segmentation"] = uncompressed(mask_util.merge(mask_util.frPyObjects(parts, h, w)))
            anns.append(ann)
            objects.append((cat, parts))
        n_dets = int(rng.integers(*dets_per_image)) if rng.random() >= empty else 0
        pool = [int(c) for c in rng.choice(cat_ids, confusable)] if confusable else cat_ids
        shapes = [detection(rng, objects, pool, w, h) for _ in range(n_dets)]
        if crowded_group and img_id == img_ids[0]:
            cat = int(rng.choice(cat_ids))
            shapes += [(cat, detection(rng, [], [cat], w, h)[1]) for _ in range(int(rng.integers(100, 131)))]
        if ties and w >= 60 and h >= 20 and rng.random() < 0.3:
            shapes += tie_trap(rng, anns, int(img_id), int(rng.choice(cat_ids)), w, h, masks)
        dets += results(rng, shapes, cat_ids, int(img_id), h, w, masks)
    if undetected and rng.random() < 0.5:
        missing = int(rng.choice(cat_ids))
        dets = [d for d in dets if d["category_id"] != missing]
    order = rng.permutation(len(dets))  # results need not come image by image
    gt = {"images": [imgs[i] for i in rng.permutation(len(imgs))], "annotations": anns, "categories": cats}
    return gt, [dets[i] for i in order]


def detection(rng: np.random.Generator, objects: list, cat_ids: list[int], w: int, h: int):
    """(category, polygons): a jittered copy of a ground-truth object (usually its category), or a random
    shape of a random category."""
    if objects and rng.random() < 0.6:
        cat, parts = objects[int(rng.integers(len(objects)))]
        if rng.random() < 0.15:
            cat = int(rng.choice(cat_ids))
        jitter = rng.normal(0, rng.choice([0.5, 2.0, 6.0]), 2)
        scale = rng.uniform(0.8, 1.2)
        polys = []
        for p in parts:
            xy = np.reshape(p, (-1, 2))
            c = xy.mean(0)
            polys.append(np.round(np.clip((xy - c) * scale + c + jitter, 0, [w, h]).reshape(-1), 2).tolist())
        return cat, polys
    radius = float(np.exp(rng.uniform(np.log(1.5), np.log(max(w, h) * 0.6))))
    return int(rng.choice(cat_ids)), [polygon(rng, rng.uniform(0, w), rng.uniform(0, h), radius, w, h)]


def tie_trap(rng: np.random.Generator, anns: list, img_id: int, cat: int, w: int, h: int, masks: bool) -> list:
    """Two ground-truth rectangles A and B (B 8 pixels right of A, 40 wide: IoU(A, B) = 2/3) and two
    detections: one 4 pixels right of A, first by score, whose IoU with A and with B is the same (9/11), and
    A itself. pycocotools gives the first detection the *last* ground truth of highest IoU (B), so A is
    still free for the second one at thresholds above 2/3; taking the first (A) would lose that match."""
    x, y = int(rng.integers(0, w - 50)), int(rng.integers(0, h - 15))
    hh = int(rng.integers(10, h - y + 1))

    def rect(dx: int) -> list[float]:
        return [float(v) for v in (x + dx, y, x + dx + 40, y, x + dx + 40, y + hh, x + dx, y + hh)]

    for dx in (0, 8):
        ann = {"id": len(anns) + 1, "image_id": img_id, "category_id": cat, "bbox": extent([rect(dx)]),
               "area": 40.0 * hh, "iscrowd": 0}  # fmt: skip
        if masks:
            ann["segmentation"] = [rect(dx)]
        anns.append(ann)
    return [(cat, [rect(4)], 0.97), (cat, [rect(0)], 0.96)]


def results(rng: np.random.Generator, shapes: list, cat_ids: list[int], img_id: int, h: int, w: int,
            masks: bool) -> list[dict]:  # fmt: skip
    """COCO results of one image: boxes from the polygons' extents (some exactly 32x32 or 96x96), scores
    rounded to two decimals, 2% of a category the dataset lacks; masks rasterized in one call per image.
    A shape (category, polygons, score) is kept as it is."""
    out = []
    for cat, polys, *fixed in shapes:
        bbox = extent(polys)
        if not fixed and rng.random() < 0.1:  # a box of area exactly 32² or 96²
            side = float(rng.choice([32.0, 96.0]))
            bbox = [bbox[0], bbox[1], side, side]
        if not fixed and rng.random() < 0.02:
            cat = max(cat_ids) + 1  # a category the dataset does not list: dropped by the evaluation
        score = fixed[0] if fixed else float(np.round(rng.random(), 2))
        out.append({"image_id": img_id, "category_id": cat, "bbox": bbox, "score": score})
    if masks and shapes:
        flat = [p for _, polys, *_ in shapes for p in polys]
        rles = mask_util.frPyObjects(flat, h, w)
        i = 0
        for det, (_, polys, *_) in zip(out, shapes, strict=True):
            part = rles[i : i + len(polys)]
            i += len(polys)
            rle = part[0] if len(part) == 1 else mask_util.merge(part)
            det["segmentation"] = {"size": [h, w], "counts": rle["counts"].decode("utf-8")}
    return out
