"""COCO box and mask AP with the numbers of pycocotools' ``COCOeval``, vectorized.

pycocotools spends its time in Python loops: one ``computeIoU`` and four ``evaluateImg`` calls per
(image, category) of the whole dataset (400,000 of each at val2017 scale, most of them empty), a loop per
ground truth inside every detection inside every IoU threshold, and a precision envelope walked element by
element 9,600 times. Here the same quantities are array operations, in the same float64 arithmetic:

- boxes: ``bbIou``'s formula (intersection over ``da + ga - i``, over ``da`` for a crowd ground truth), on
  every (detection, ground truth) pair of an (image, category), at once. Masks: pycocotools' own C
  ``mask.iou`` per (image, category) that has both, so mask IoUs are pycocotools' by construction;
  polygons become RLE with its ``frPyObjects``/``merge`` exactly as ``COCO.annToRLE`` does, only for the
  ground truth that some detection can meet.
- the greedy matching keeps ``evaluateImg``'s rules: detections by descending score (stable), at most
  ``max_dets[-1]`` per (image, category); each takes, among the free ground truth (crowd is never used
  up) with IoU >= min(t, 1 - 1e-10), the *last* one of highest IoU among those not ignored, and only if
  there is none, the last one of highest IoU among the ignored (crowd, or area out of range). It runs for
  all (image, category), area ranges and thresholds together, one detection rank at a time;
- accumulation keeps ``accumulate``'s order (images by id, each by score, then a stable sort by score),
  its ``tp / (fp + tp + eps)``, the envelope, ``searchsorted(..., side="left")`` and the -1 of a category
  without any non-ignored ground truth; the 12 summary numbers are the same masked means of the same arrays.
Quirks are kept too: a detection matched to a ground truth whose id is 0 counts as unmatched (``dtm == 0``),
detections of categories the ground truth does not list are dropped, and a detection on an unknown image
is an error. tests/test_coco_eval.py checks all 12 numbers against pycocotools on many random datasets.

Conventions of detectron2's ``COCOEvaluator`` (v0.6, ``use_fast_impl=False``), which :func:`evaluate` and
:class:`COCOEvaluator` follow: results in percent; pycocotools' -1 (nothing to average) becomes NaN; no
detections at all gives NaN everywhere; for masks the detections' ``bbox`` is ignored, so areas are mask
areas; a third ``max_dets`` other than 100 is used for AP as in its ``COCOevalMaxDets``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_util

from xfer import d2compat

d2compat.ensure()

from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.data.datasets.coco import convert_to_coco_dict  # noqa: E402
from detectron2.evaluation import DatasetEvaluator  # noqa: E402
from detectron2.evaluation.coco_evaluation import instances_to_coco_json  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.file_io import PathManager  # noqa: E402
from detectron2.utils.logger import create_small_table  # noqa: E402

log = logging.getLogger(__name__)

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # pycocotools' Params.iouThrs
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # Params.recThrs
AREA_RANGES = ((0**2, 1e5**2), (0**2, 32**2), (32**2, 96**2), (96**2, 1e5**2))  # all, small, medium, large
AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def stat_names(max_dets=(1, 10, 100)) -> tuple[str, ...]:
    """The 12 names, pycocotools' order: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl."""
    m = sorted(max_dets)
    return AP_NAMES + (f"AR{m[0]}", f"AR{m[1]}", f"AR{m[2]}", "ARs", "ARm", "ARl")


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


@dataclass
class CocoEval:
    """What ``COCOeval.accumulate``/``summarize`` leave: ``stats`` (12, fractions, -1 = nothing to
    average), ``precision`` [T, R, K, A, M] and ``recall`` [T, K, A, M]."""

    stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    max_dets: tuple[int, ...]


def coco_eval(gt: CocoTruth | dict | str | os.PathLike, detections: list[dict], iou_type: str,
              max_dets=(1, 10, 100)) -> CocoEval:  # fmt: skip
    """pycocotools' ``loadRes`` + ``COCOeval(gt, dt, iou_type)`` evaluate/accumulate/summarize, as arrays."""
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', not {iou_type!r}")
    truth = gt if isinstance(gt, CocoTruth) else CocoTruth(gt)
    max_dets = tuple(sorted(int(m) for m in max_dets))
    if len(max_dets) < 3:
        raise ValueError("max_dets needs at least 3 entries, as COCOeval's summary reads three")
    dets = _detections(truth, detections, iou_type, max_dets[-1])
    pair_det, pair_gt, pair_iou = _pairs(truth, dets, detections, iou_type)
    gt_ignore = np.stack([truth.crowd | (truth.area < lo) | (truth.area > hi) for lo, hi in AREA_RANGES])
    matched, dt_ignore = _match(dets, truth, gt_ignore, pair_det, pair_gt, pair_iou)
    precision, recall = _accumulate(dets, truth, gt_ignore, matched, dt_ignore, max_dets)
    return CocoEval(_summarize(precision, recall, max_dets), precision, recall, max_dets)


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


def _pairs(truth: CocoTruth, dets: _Dets, detections: list[dict], iou_type: str):
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


def _mask_iou(truth: CocoTruth, dets: _Dets, detections: list[dict], pair_det, pair_gt) -> np.ndarray:
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


def _last_best(cand: np.ndarray, iou: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
    """Per segment (detection) of the last axis: the position of the last candidate of highest IoU, -1 if
    none (``evaluateImg``'s ``if ious[d, g] < iou: continue`` keeps the last of equal IoUs)."""
    val = np.where(cand, iou, -1.0)
    best = np.maximum.reduceat(val, starts, axis=-1)
    at = cand & (val == np.repeat(best, lengths, axis=-1))
    pos = np.where(at, np.arange(iou.shape[-1]), -1)
    return np.maximum.reduceat(pos, starts, axis=-1)


def _match(dets: _Dets, truth: CocoTruth, gt_ignore, pair_det, pair_gt, pair_iou):
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


def _accumulate(dets: _Dets, truth: CocoTruth, gt_ignore, matched, dt_ignore, max_dets):
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


def _summarize(precision: np.ndarray, recall: np.ndarray, max_dets: tuple[int, ...]) -> np.ndarray:
    """``_summarizeDets``: means over entries > -1, -1 when there is none; AP at ``max_dets[2]``."""

    def mean(s: np.ndarray) -> float:
        s = s[s > -1]
        return float(np.mean(s)) if len(s) else -1.0

    t50, t75 = (np.flatnonzero(IOU_THRESHOLDS == t) for t in (0.5, 0.75))
    m = max_dets.index
    big = m(max_dets[2])
    ap = [mean(precision[t][:, :, :, 0, big]) for t in (slice(None), t50, t75)]
    ap += [mean(precision[:, :, :, a, big]) for a in (1, 2, 3)]
    ar = [mean(recall[:, :, 0, m(max_dets[i])]) for i in range(3)] + [mean(recall[:, :, a, big]) for a in (1, 2, 3)]
    return np.array(ap + ar)


def evaluate(gt: CocoTruth | dict | str | os.PathLike, detections: list[dict], iou_type: str,
             max_dets=(1, 10, 100)) -> dict[str, float]:  # fmt: skip
    """The 12 COCO numbers in percent under detectron2's names (AP, AP50, ..., and AR1, AR10, AR100, ARs,
    ARm, ARl), NaN where pycocotools gives -1, and NaN everywhere without detections (detectron2's rule)."""
    names = stat_names(max_dets)
    if not detections:
        return {name: float("nan") for name in names}
    stats = coco_eval(gt, detections, iou_type, max_dets).stats
    return {name: float(v * 100) if v >= 0 else float("nan") for name, v in zip(names, stats, strict=True)}


class COCOEvaluator(DatasetEvaluator):
    """detectron2's ``COCOEvaluator`` for boxes and masks (v0.6 with ``use_fast_impl=False``: the official
    numbers), on :func:`coco_eval`. Same construction (dataset metadata ``json_file``, or the dataset
    converted in memory), same ``process`` (detectron2's ``instances_to_coco_json``), same gathering to
    rank 0 and same result: ``{"bbox": {...}, "segm": {...}}`` with AP, AP50, AP75, APs, APm, APl and
    ``AP-<class>``. It writes nothing unless ``write_results`` (then ``coco_instances_results.json`` in
    ``output_dir``, as detectron2 always does). Not supported: proposals, keypoints, ``img_ids``."""

    def __init__(self, dataset_name: str, tasks: tuple[str, ...] | None = None, distributed: bool = True,
                 output_dir: str | None = None, *, max_dets_per_image: int | None = None,
                 write_results: bool = False) -> None:  # fmt: skip
        self._metadata = MetadataCatalog.get(dataset_name)
        self._tasks = tasks
        self._distributed = distributed
        self._output_dir = output_dir if write_results else None
        self._max_dets = (1, 10, 100 if max_dets_per_image is None else max_dets_per_image)
        if hasattr(self._metadata, "json_file"):
            gt = PathManager.get_local_path(self._metadata.json_file)
        else:  # detectron2 writes <output_dir>/<name>_coco_format.json first; the dict is all it needs
            gt = convert_to_coco_dict(dataset_name)
        self._truth = CocoTruth(gt)
        self.reset()

    def reset(self) -> None:
        self._predictions: list[dict] = []

    def process(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs, strict=True):
            if "instances" in out:
                instances = out["instances"].to("cpu")
                self._predictions.append({"image_id": inp["image_id"],
                                          "instances": instances_to_coco_json(instances, inp["image_id"])})  # fmt: skip

    def evaluate(self) -> OrderedDict | dict:
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(self._predictions, dst=0)))  # rank order
            if not comm.is_main_process():
                return {}
        else:
            predictions = self._predictions
        if not predictions:
            log.warning("[COCOEvaluator] Did not receive valid predictions.")
            return {}
        results = list(itertools.chain(*[p["instances"] for p in predictions]))
        tasks = self._tasks or (("bbox", "segm") if any("segmentation" in r for r in results) else ("bbox",))
        mapping = getattr(self._metadata, "thing_dataset_id_to_contiguous_id", None)
        if mapping:
            reverse = {v: k for k, v in mapping.items()}
            for r in results:
                r["category_id"] = reverse[r["category_id"]]
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            with PathManager.open(os.path.join(self._output_dir, "coco_instances_results.json"), "w") as f:
                f.write(json.dumps(results))
        if not self._truth.has_annotations:
            log.info("Annotations are not available for evaluation.")
            return OrderedDict()
        return OrderedDict((task, self._task_results(results, task)) for task in sorted(tasks))

    def _task_results(self, results: list[dict], task: str) -> dict[str, float]:
        """detectron2's ``_derive_coco_results``: percent, -1 as NaN, and AP per class (all areas, the
        largest max_dets); NaN everywhere when there is no detection at all."""
        if not results:
            log.warning("No predictions from the model!")
            return {name: float("nan") for name in AP_NAMES}
        ev = coco_eval(self._truth, results, task, self._max_dets)
        out = {name: float(v * 100) if v >= 0 else float("nan") for name, v in zip(AP_NAMES, ev.stats, strict=False)}
        log.info(f"Evaluation results for {task}: \n" + create_small_table(out))
        names = self._metadata.get("thing_classes")
        if names is None or len(names) <= 1:
            return out
        assert len(names) == ev.precision.shape[2]
        for k, name in enumerate(names):
            p = ev.precision[:, :, k, 0, -1]
            p = p[p > -1]
            out[f"AP-{name}"] = float(np.mean(p) * 100) if p.size else float("nan")
        return out
