"""pycocotools' ``COCOeval`` as arrays: the ground truth (:class:`CocoTruth`) and a vectorized engine.

pycocotools spends its time in Python loops: one ``computeIoU`` and four ``evaluateImg`` calls per
(image, category) of the whole dataset (400,000 of each at val2017 scale, most of them empty), a loop per
ground truth inside every detection inside every IoU threshold, and a precision envelope walked element by
element 9,600 times. :func:`precision_recall` computes the same quantities as array operations, in the
same float64 arithmetic:

- boxes: ``bbIou``'s formula (intersection over ``da + ga - i``, over ``da`` for a crowd ground truth), on
  every (detection, ground truth) pair of an (image, category), at once. Masks: pycocotools' own C
  ``mask.iou`` per (image, category) that has both, so mask IoUs are pycocotools' by construction;
  polygons become RLE with its ``frPyObjects``/``merge`` exactly as ``COCO.annToRLE`` does, only for the
  ground truth that some detection can meet;
- the greedy matching keeps ``evaluateImg``'s rules: detections by descending score (stable), at most
  ``max_dets[-1]`` per (image, category); each takes, among the free ground truth (crowd is never used
  up) with IoU >= min(t, 1 - 1e-10), the *last* one of highest IoU among those not ignored, and only if
  there is none, the last one of highest IoU among the ignored (crowd, or area out of range). It runs for
  all (image, category), area ranges and thresholds together, one detection rank at a time;
- accumulation keeps ``accumulate``'s order (images by id, each by score, then a stable sort by score),
  its ``tp / (fp + tp + eps)``, the envelope, ``searchsorted(..., side="left")`` and the -1 of a category
  without any non-ignored ground truth.
Quirks are kept too: a detection matched to a ground truth whose id is 0 counts as unmatched (``dtm == 0``),
detections of categories the ground truth does not list are dropped, and a detection on an unknown image
is an error. For masks the detections' ``bbox`` is ignored (detectron2 removes it before ``loadRes``), so
areas are mask areas.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_util

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # pycocotools' Params.iouThrs
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # Params.recThrs
AREA_RANGES = ((0**2, 1e5**2), (0**2, 32**2), (32**2, 96**2), (96**2, 1e5**2))  # all, small, medium, large
AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")

class CocoTruth:
    """Ground truth as arrays, loaded once: what ``COCO(...)`` plus ``COCOeval._prepare`` keep of it.

    Images and categories are sorted by id (``Params.imgIds/catIds``); an annotation whose image or
    category is not listed is dropped, as ``getAnnIds(imgIds, catIds)`` drops it. Masks are converted to
    RLE on first use and cached, so an evaluator that evaluates many times converts each once."""

    def __init__(self, gt: dict | str | os.PathLike) -> None:
        if not isinstance(gt, dict):
            with open(gt) as f:
                gt = json.load(f)
        self.img_ids = np.unique(np.array([im["id"] for im in gt["images"]], dtype=np.int64))
        self.cat_ids = np.unique(np.array([c["id"] for c in gt["categories"]], dtype=np.int64))
        self.hw = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
        self.dataset = gt  # as given (read, never modified)
        self.cache: dict = {}  # other engines' forms of it (xfer.benchmarks.coco_eval)
        self.has_annotations = "annotations" in gt  # a test split's json has none: nothing to evaluate
        anns = gt.get("annotations", [])
        img = _index(self.img_ids, [a["image_id"] for a in anns])
        cat = _index(self.cat_ids, [a["category_id"] for a in anns])
        keep = np.flatnonzero((img >= 0) & (cat >= 0))
        self.anns = [anns[i] for i in keep]
        self.img, self.cat = img[keep], cat[keep]
        self.area = np.array([a["area"] for a in self.anns], dtype=np.float64)
        self.crowd = np.array([bool(a.get("iscrowd", 0)) for a in self.anns], dtype=bool)
        self.ids = np.array([a["id"] for a in self.anns], dtype=np.float64)
        self.boxes = np.array([a.get("bbox", (0, 0, 0, 0)) for a in self.anns], dtype=np.float64).reshape(-1, 4)
        self._rles: dict[int, dict] = {}

    def rles(self, which: np.ndarray) -> list[dict]:
        """RLEs of annotations ``which`` (``COCO.annToRLE``: polygons through ``frPyObjects`` then ``merge``,
        an uncompressed RLE through ``frPyObjects``, a compressed one as is)."""
        for i in which.tolist():
            if i not in self._rles:
                ann = self.anns[i]
                h, w = self.hw[ann["image_id"]]
                segm = ann["segmentation"]
                if isinstance(segm, list):
                    parts = mask_util.frPyObjects(segm, h, w)
                    self._rles[i] = parts[0] if len(parts) == 1 else mask_util.merge(parts)  # merge of one: a copy
                elif isinstance(segm["counts"], list):
                    self._rles[i] = mask_util.frPyObjects(segm, h, w)
                else:
                    self._rles[i] = segm
        return [self._rles[i] for i in which.tolist()]


def _index(sorted_ids: np.ndarray, values: list) -> np.ndarray:
    """Position of each value in ``sorted_ids``, -1 where absent."""
    v = np.array(values, dtype=np.int64).reshape(-1)
    pos = np.minimum(np.searchsorted(sorted_ids, v), max(len(sorted_ids) - 1, 0))
    found = sorted_ids[pos] == v if len(sorted_ids) else np.zeros(len(v), dtype=bool)
    return np.where(found, pos, -1)



def precision_recall(truth: CocoTruth, detections: list[dict], iou_type: str,
                     max_dets: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``COCOeval.evaluate`` + ``accumulate``: precision [T, R, K, A, M] and recall [T, K, A, M]."""
    dets = _detections(truth, detections, iou_type, max_dets[-1])
    pair_det, pair_gt, pair_iou = _pairs(truth, dets, detections, iou_type)
    gt_ignore = np.stack([truth.crowd | (truth.area < lo) | (truth.area > hi) for lo, hi in AREA_RANGES])
    matched, dt_ignore = _match(dets, truth, gt_ignore, pair_det, pair_gt, pair_iou)
    return _accumulate(dets, truth, gt_ignore, matched, dt_ignore, max_dets)


@dataclass
class _Dets:
    """The detections ``evaluateImg`` sees: per (image, category) the first ``max_det`` by score."""

    src: np.ndarray  # index into the caller's list
    img: np.ndarray
    cat: np.ndarray
    score: np.ndarray
    rank: np.ndarray  # place in its (image, category) by descending score, ties in list order
    area: np.ndarray
    boxes: np.ndarray


def _detections(truth: CocoTruth, detections: list[dict], iou_type: str, max_det: int) -> _Dets:
    img = _index(truth.img_ids, [d["image_id"] for d in detections])
    if (img < 0).any():
        raise ValueError("Results do not correspond to current coco set: a detection's image is not in it")
    cat = _index(truth.cat_ids, [d["category_id"] for d in detections])
    score = np.array([d["score"] for d in detections], dtype=np.float64)
    listed = np.flatnonzero(cat >= 0)  # getAnnIds(catIds=...) drops the others
    n, k = len(listed), max(len(truth.cat_ids), 1)
    key = img[listed] * k + cat[listed]
    order = listed[np.lexsort((listed, -score[listed], key))]  # by (image, category), score, list order
    skey = img[order] * k + cat[order]
    first = np.r_[0, np.flatnonzero(np.diff(skey)) + 1] if n else np.zeros(0, dtype=np.int64)
    rank = np.arange(n) - np.repeat(first, np.diff(np.r_[first, n]))
    keep = rank < max_det
    src, rank = order[keep], rank[keep]
    if iou_type == "bbox":
        boxes = np.array([detections[i]["bbox"] for i in src.tolist()], dtype=np.float64).reshape(-1, 4)
        area = boxes[:, 2] * boxes[:, 3]  # loadRes: bb[2] * bb[3]
    else:  # loadRes: mask.area of the RLE (detectron2 drops the box, so the mask's area decides the range);
        # at most 255 per call: pycocotools 2.0.11's area() sizes a uint8 array with the count (NumPy 2 raises)
        boxes = np.zeros((len(src), 4))
        segms = [detections[i]["segmentation"] for i in src.tolist()]
        area = np.concatenate([np.zeros(0)] + [mask_util.area(segms[i : i + 255]).astype(np.float64)
                                                for i in range(0, len(segms), 255)])  # fmt: skip
    return _Dets(src, img[src], cat[src], score[src], rank, area, boxes)


def _pairs(truth: CocoTruth, dets: _Dets, detections: list[dict], iou_type: str) -> tuple[np.ndarray, ...]:
    """Every (detection, ground truth) of one (image, category) with its IoU, ordered by detection rank,
    then (image, category), then ground truth in annotation order: the order the matching consumes."""
    k = max(len(truth.cat_ids), 1)
    gkey = truth.img * k + truth.cat
    gorder = np.argsort(gkey, kind="stable")
    sorted_gkey = gkey[gorder]
    dkey = dets.img * k + dets.cat
    start = np.searchsorted(sorted_gkey, dkey, side="left")
    count = np.searchsorted(sorted_gkey, dkey, side="right") - start
    by_group = np.lexsort((dets.rank, dkey))  # (image, category), then rank: pycocotools' IoU matrices
    counts = count[by_group]
    pair_det = np.repeat(by_group, counts)
    offsets = np.arange(len(pair_det)) - np.repeat(np.cumsum(counts) - counts, counts)
    pair_gt = gorder[np.repeat(start[by_group], counts) + offsets]
    if iou_type == "bbox":
        iou = _box_iou(dets.boxes[pair_det], truth.boxes[pair_gt], truth.crowd[pair_gt])
    else:
        iou = _mask_iou(truth, dets, detections, pair_det, pair_gt)
    order = np.argsort(dets.rank[pair_det], kind="stable")
    return pair_det[order], pair_gt[order], iou[order]


def _box_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' ``bbIou`` on pairs: the same float64 operations in the same order."""
    w = np.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - np.maximum(d[:, 1], g[:, 1])
    inter = w * h
    da, ga = d[:, 2] * d[:, 3], g[:, 2] * g[:, 3]
    union = np.where(crowd, da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where((w > 0) & (h > 0), iou, 0.0)


def _mask_iou(truth: CocoTruth, dets: _Dets, detections: list[dict], pair_det: np.ndarray,
              pair_gt: np.ndarray) -> np.ndarray:  # fmt: skip
    """pycocotools' ``mask.iou`` per (image, category) with pairs; ``pair_det`` is grouped, ranks ascending."""
    if len(pair_det) == 0:
        return np.zeros(0)
    det_starts = np.r_[0, np.flatnonzero(np.diff(pair_det)) + 1]
    grp = dets.img[pair_det[det_starts]] * len(truth.cat_ids) + dets.cat[pair_det[det_starts]]
    group_starts = det_starts[np.r_[0, np.flatnonzero(np.diff(grp)) + 1]].tolist() + [len(pair_det)]
    out = []
    for s, e in zip(group_starts[:-1], group_starts[1:], strict=True):
        seg_d = pair_det[s:e]
        n_gt = int(np.argmax(seg_d != seg_d[0])) or e - s  # the group's ground truth count
        gts = pair_gt[s : s + n_gt]
        dt = [detections[i]["segmentation"] for i in dets.src[seg_d[::n_gt]].tolist()]
        ious = mask_util.iou(dt, truth.rles(gts), truth.crowd[gts].astype(np.uint8).tolist())
        out.append(np.asarray(ious, dtype=np.float64).reshape(-1))
    return np.concatenate(out)


def _last_best(cand: np.ndarray, iou: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per segment (detection) of the last axis: the position of the last candidate of highest IoU, -1 if
    none (``evaluateImg``'s ``if ious[d, g] < iou: continue`` keeps the last of equal IoUs)."""
    val = np.where(cand, iou, -1.0)
    best = np.maximum.reduceat(val, starts, axis=-1)
    at = cand & (val == np.repeat(best, lengths, axis=-1))
    pos = np.where(at, np.arange(iou.shape[-1]), -1)
    return np.maximum.reduceat(pos, starts, axis=-1)


def _match(dets: _Dets, truth: CocoTruth, gt_ignore: np.ndarray, pair_det: np.ndarray, pair_gt: np.ndarray,
           pair_iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``evaluateImg``'s greedy matching for all (image, category), area ranges and thresholds at once.
    Returns per [area, threshold, detection]: matched (to a ground truth of nonzero id) and ignored."""
    n_area, n_thr, n_det = len(AREA_RANGES), len(IOU_THRESHOLDS), len(dets.src)
    thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[None, :, None]
    used = np.zeros((n_area, n_thr, len(truth.anns)), dtype=bool)
    det_gt = np.full((n_area, n_thr, n_det), -1, dtype=np.int64)
    rank_edges = np.searchsorted(dets.rank[pair_det], np.arange(int(dets.rank.max(initial=-1)) + 2))
    a_idx, t_idx = np.ogrid[:n_area, :n_thr]
    for r in range(len(rank_edges) - 1):
        s, e = rank_edges[r], rank_edges[r + 1]
        if s == e:
            continue
        d, g, v = pair_det[s:e], pair_gt[s:e], pair_iou[s:e]
        starts = np.r_[0, np.flatnonzero(np.diff(d)) + 1]
        lengths = np.diff(np.r_[starts, e - s])
        ok = (~used[:, :, g] | truth.crowd[g]) & (v >= thr)  # free (crowd never used up) and above threshold
        ign = gt_ignore[:, None, g]
        first = _last_best(ok & ~ign, v, starts, lengths)
        second = _last_best(ok & ign, v, starts, lengths)
        pick = np.where(first >= 0, first, second)  # [A, T, detections of rank r]
        hit = pick >= 0
        chosen_gt = g[np.maximum(pick, 0)]
        a_hit = np.broadcast_to(a_idx[..., None], pick.shape)[hit]
        t_hit = np.broadcast_to(t_idx[..., None], pick.shape)[hit]
        used[a_hit, t_hit, chosen_gt[hit]] = True
        det_gt[:, :, d[starts]] = np.where(hit, chosen_gt, -1)
    hit = det_gt >= 0
    matched, ignored = hit.copy(), hit.copy()
    if len(truth.anns):
        gt_of = np.maximum(det_gt, 0)
        matched &= truth.ids[gt_of] != 0  # dtm holds the gt id, so a gt of id 0 reads as no match
        ignored &= gt_ignore[np.arange(n_area)[:, None, None], gt_of]
    outside = np.stack([(dets.area < lo) | (dets.area > hi) for lo, hi in AREA_RANGES])
    ignored |= ~matched & outside[:, None, :]
    return matched, ignored


def _accumulate(dets: _Dets, truth: CocoTruth, gt_ignore: np.ndarray, matched: np.ndarray, dt_ignore: np.ndarray,
                max_dets: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``COCOeval.accumulate``: precision [T, R, K, A, M] and recall [T, K, A, M], -1 where a category
    has no ground truth that is not ignored."""
    n_thr, n_rec, n_cat, n_area = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(truth.cat_ids), len(AREA_RANGES)
    precision = -np.ones((n_thr, n_rec, n_cat, n_area, len(max_dets)))
    recall = -np.ones((n_thr, n_cat, n_area, len(max_dets)))
    npig = np.stack([np.bincount(truth.cat[~ig], minlength=n_cat) for ig in gt_ignore], axis=1)  # [K, A]
    order = np.lexsort((dets.rank, dets.img, -dets.score, dets.cat))  # images by id, by score, stable
    cat_edges = np.searchsorted(dets.cat[order], np.arange(n_cat + 1))
    tp_all, fp_all = matched & ~dt_ignore, ~matched & ~dt_ignore
    for k in range(n_cat):
        in_cat = order[cat_edges[k] : cat_edges[k + 1]]
        for m, max_det in enumerate(max_dets):
            sel = in_cat[dets.rank[in_cat] < max_det]
            nd = len(sel)
            for a in range(n_area):
                if npig[k, a] == 0:
                    continue
                tp = np.cumsum(tp_all[a][:, sel], axis=1).astype(float)
                fp = np.cumsum(fp_all[a][:, sel], axis=1).astype(float)
                rc = tp / npig[k, a]
                pr = tp / (fp + tp + np.spacing(1))
                recall[:, k, a, m] = rc[:, -1] if nd else 0
                if nd == 0:
                    precision[:, :, k, a, m] = 0
                    continue
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # the precision envelope
                for t in range(n_thr):
                    inds = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                    precision[t, :, k, a, m] = np.where(inds < nd, pr[t][np.minimum(inds, nd - 1)], 0.0)
    return precision, recall
