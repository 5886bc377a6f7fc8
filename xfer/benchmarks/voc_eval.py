"""Pascal VOC detection AP, the same numbers as detectron2's ``PascalVOCDetectionEvaluator``, vectorized.

detectron2 writes every detection to per-class text files and runs the py-faster-rcnn ``voc_eval``
200 times (20 classes x 10 IoU thresholds), one Python loop iteration per detection each time: about a
minute at VOC07-test scale on rank 0 while the other GPUs wait. This evaluator computes the same thing
from arrays:

- the text files' rounding is kept: scores to 3 decimals, boxes (x1+1, y1+1, x2, y2, from float32) to 1;
- each detection's best overlap and best ground truth do not depend on the IoU threshold, so they are
  computed once per class (the same float64 expressions, the same +1 pixel convention, the same first
  maximum), and only the greedy matching is redone per threshold: above it, a non-difficult ground truth
  goes to its first detection in score order, later ones are false positives, difficult ones are ignored;
- the score order is ``np.argsort(-confidence)`` on detections in detectron2's own order (rank, image,
  detection), so tied scores fall the same way;
- the VOC07 11-point and the area metrics are the same sums in the same order.
The result agrees with detectron2's to within 1e-9 per class and threshold (tests/test_voc_eval.py).
A trial records AP50, AP and AP75 of it, named in result.json's ``metric_names`` (``xfer.store.files.VOC_METRICS``,
kept in ``xfer.store.files`` because the readers of result.json must not import detectron2).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections import OrderedDict
from xml.etree import ElementTree as ET

import numpy as np

from xfer import d2compat

d2compat.ensure()

from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.evaluation import DatasetEvaluator  # noqa: E402
from detectron2.utils import comm  # noqa: E402

log = logging.getLogger(__name__)
THRESHOLDS = tuple(range(50, 100, 5))


@functools.cache
def parse_annotation(path: str) -> tuple[tuple[str, int, tuple[int, int, int, int]], ...]:
    """(class name, difficult, integer box) per object, as the reference evaluator reads them."""
    objects = []
    for obj in ET.parse(path).findall("object"):
        box = obj.find("bndbox")
        coords = tuple(int(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        objects.append((obj.find("name").text, int(obj.find("difficult").text), coords))
    return tuple(objects)


def round_like_text(values: np.ndarray, decimals: int) -> np.ndarray:
    """``float(f"{v:.{decimals}f}")`` for every value, vectorized: rint(v * 10^d) / 10^d is the same
    number except near a decimal tie, where Python's exact formatting decides."""
    v = np.asarray(values, dtype=np.float64)
    scale = 10.0**decimals
    scaled = v * scale
    out = np.rint(scaled) / scale
    near_tie = np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) < 1e-6
    for i in np.flatnonzero(near_tie):
        out[i] = float(f"{v[i]:.{decimals}f}")
    return out


def ap_from_matches(tp: np.ndarray, fp: np.ndarray, npos: int, use_07_metric: bool) -> float:
    """VOC AP from per-detection TP/FP flags in score order (``voc_eval`` and ``voc_ap``'s arithmetic)."""
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            above = rec >= t
            p = 0 if np.sum(above) == 0 else np.max(prec[above])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the precision envelope, right to left
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def best_overlaps(images: np.ndarray, boxes: np.ndarray, gt_start: np.ndarray, gt_boxes: np.ndarray):
    """Per detection: its largest IoU with a ground truth of its image and class, and that ground truth's
    index (-inf and -1 when the image has none). All detections at once against their image's ground
    truths, padded to the most any image has; padding is -inf, so it never wins a maximum."""
    n = len(images)
    first, count = gt_start[images], gt_start[images + 1] - gt_start[images]
    width = int(count.max()) if n else 0
    if width == 0:
        return np.full(n, -np.inf), np.full(n, -1, dtype=np.int64)
    slot = np.arange(width)[None, :]
    valid = slot < count[:, None]
    gt = gt_boxes[np.where(valid, first[:, None] + slot, 0)] if len(gt_boxes) else np.zeros((n, width, 4))
    bb = boxes[:, None, :]
    ixmin = np.maximum(gt[..., 0], bb[..., 0])
    iymin = np.maximum(gt[..., 1], bb[..., 1])
    ixmax = np.minimum(gt[..., 2], bb[..., 2])
    iymax = np.minimum(gt[..., 3], bb[..., 3])
    iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
    ih = np.maximum(iymax - iymin + 1.0, 0.0)
    inters = iw * ih
    uni = ((bb[..., 2] - bb[..., 0] + 1.0) * (bb[..., 3] - bb[..., 1] + 1.0)
           + (gt[..., 2] - gt[..., 0] + 1.0) * (gt[..., 3] - gt[..., 1] + 1.0) - inters)  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore"):
        overlaps = np.where(valid, inters / uni, -np.inf)
    ovmax = np.max(overlaps, axis=1)  # a NaN overlap makes the maximum NaN, as np.max does in voc_eval
    jmax = first + np.argmax(overlaps, axis=1)
    none = count == 0
    ovmax[none], jmax[none] = -np.inf, -1
    return ovmax, jmax


def class_aps(images, scores, boxes, gt_start, gt_boxes, gt_difficult, use_07_metric) -> dict[int, float]:
    """AP (0-1) of one class at every threshold of :data:`THRESHOLDS`; detections in detectron2's order."""
    npos = int(np.sum(~gt_difficult))
    order = np.argsort(-scores)
    images, boxes = images[order], boxes[order]
    ovmax, jmax = best_overlaps(images, boxes, gt_start, gt_boxes)
    out = {}
    for thresh in THRESHOLDS:
        hit = ovmax > thresh / 100.0
        difficult = np.zeros(len(images), dtype=bool)
        difficult[hit] = gt_difficult[jmax[hit]]
        candidates = np.flatnonzero(hit & ~difficult)
        tp = np.zeros(len(images))
        if len(candidates):
            _, first = np.unique(jmax[candidates], return_index=True)
            tp[candidates[first]] = 1.0
        fp = np.where(hit, 0.0, 1.0)
        fp[candidates] = 1.0 - tp[candidates]
        out[thresh] = ap_from_matches(tp, fp, npos, use_07_metric)
    return out


class VOCEvaluator(DatasetEvaluator):
    """Drop-in for detectron2's ``PascalVOCDetectionEvaluator`` (same dataset metadata, same result)."""

    def __init__(self, dataset_name: str) -> None:
        meta = MetadataCatalog.get(dataset_name)
        self._dataset_name = dataset_name
        self._anno = os.path.join(meta.dirname, "Annotations", "{}.xml")
        self._image_set = os.path.join(meta.dirname, "ImageSets", "Main", meta.split + ".txt")
        self._class_names = list(meta.thing_classes)
        self._is_2007 = meta.year == 2007
        self.per_class: dict[int, list[float]] = {}

    def reset(self) -> None:
        self._chunks: list[tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def process(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs, strict=True):
            inst = out["instances"].to("cpu")
            boxes = inst.pred_boxes.tensor.numpy().astype(np.float32, copy=True)
            boxes[:, :2] += np.float32(1)  # detectron2 writes x1+1, y1+1 (VOC's 1-based pixels), in float32
            scores = inst.scores.numpy().astype(np.float32)
            self._chunks.append((inp["image_id"], scores, boxes, inst.pred_classes.numpy().astype(np.int64)))

    def _ground_truth(self, names: list[str]):
        """Every object of the split: image index, class index (-1: not a class here), box, difficult."""
        classes = {name: i for i, name in enumerate(self._class_names)}
        rows = [(img, classes.get(name, -1), box, difficult)
                for img, name_ in enumerate(names) for name, difficult, box in parse_annotation(self._anno.format(name_))]  # fmt: skip
        image = np.array([r[0] for r in rows], dtype=np.int64)
        cls = np.array([r[1] for r in rows], dtype=np.int64)
        boxes = np.array([r[2] for r in rows], dtype=np.float64).reshape(-1, 4)
        difficult = np.array([bool(r[3]) for r in rows], dtype=bool)
        return image, cls, boxes, difficult

    def evaluate(self):
        gathered = comm.gather(self._chunks, dst=0)  # rank order, as detectron2 concatenates
        if not comm.is_main_process():
            return None
        chunks = [c for rank in gathered for c in rank]
        with open(self._image_set) as f:
            names = [x.strip() for x in f.readlines()]
        index = {name: i for i, name in enumerate(names)}
        lengths = [len(c[1]) for c in chunks]
        images = np.repeat(np.array([index[c[0]] for c in chunks], dtype=np.int64), lengths)
        scores = round_like_text(np.concatenate([c[1] for c in chunks] or [np.zeros(0, np.float32)]), 3)
        boxes = np.concatenate([c[2] for c in chunks] or [np.zeros((0, 4), np.float32)])
        boxes = round_like_text(boxes.reshape(-1), 1).reshape(-1, 4)
        classes = np.concatenate([c[3] for c in chunks] or [np.zeros(0, np.int64)])
        gt_image, gt_class, gt_boxes, gt_difficult = self._ground_truth(names)
        aps: dict[int, list[float]] = {t: [] for t in THRESHOLDS}
        for cls_id in range(len(self._class_names)):
            gt = gt_class == cls_id  # objects stay in image order, then annotation order
            gt_start = np.searchsorted(gt_image[gt], np.arange(len(names) + 1)).astype(np.int64)
            mine = classes == cls_id
            per = class_aps(images[mine], scores[mine], boxes[mine], gt_start, gt_boxes[gt], gt_difficult[gt],
                            self._is_2007)  # fmt: skip
            for t in THRESHOLDS:
                aps[t].append(per[t] * 100)
        self.per_class = aps
        m_ap = {iou: np.mean(x) for iou, x in aps.items()}
        result = {"AP": np.mean(list(m_ap.values())), "AP50": m_ap[50], "AP75": m_ap[75]}
        if any(math.isnan(v) for v in result.values()):
            log.warning("VOC AP is NaN: a class has no (non-difficult) ground truth in %s", self._dataset_name)
        return OrderedDict(bbox=result)
