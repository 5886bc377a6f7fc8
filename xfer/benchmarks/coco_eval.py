"""COCO box and mask AP with the numbers of pycocotools' ``COCOeval``, fast.

Two engines compute ``COCOeval``'s precision and recall arrays; the 12 numbers are then the same masked
means of them (:func:`summary`):

- ``hotcoco`` (the default): hotcoco's Rust port of pycocotools (PyPI ``hotcoco``). Checked here to give
  pycocotools' precision and recall arrays *bit for bit* on every random dataset of
  tests/test_coco_eval.py (crowd as RLE and polygons, area boundaries, ties, > 100 detections per image,
  unknown categories, custom max_dets). At val2017 scale on one core (bench/coco_eval_speed.py: 5,000
  images, 45k ground truth, 498k detections with masks), :func:`coco_eval` on it takes 0.98 s for boxes
  and 2.5 s for masks, where pycocotools takes 32.9 s and 37.7 s: 34x and 15x. The one difference found: pycocotools stores a match as the ground truth's
  *id*, so a match to an annotation of id 0 reads as none; hotcoco counts it. COCOeval scores each category
  apart from the others (its [T, R, K, A, M] arrays have one K slice per category), so the slice of the
  category holding an annotation of id 0 is computed again by the NumPy engine on that category alone, and
  replaces hotcoco's. Detections of categories the dataset does not list are dropped before hotcoco sees
  them (pycocotools drops them too; hotcoco would warn on stderr).
- ``numpy``: :mod:`xfer.benchmarks.coco_arrays`, pycocotools' algorithm vectorized with NumPy (mask IoU
  by pycocotools' own C code), bit for bit too, quirks included; 4.3 s and 6.8 s there (7.7x, 5.5x).
faster-coco-eval (1.8.0) was considered first: within 1e-16 of pycocotools everywhere tested, but on one
core only 3.5x (boxes) and 1.7x (masks) faster at val2017 scale, below the 10x asked for.

Conventions of detectron2's ``COCOEvaluator`` (v0.6, ``use_fast_impl=False``), which :func:`evaluate` and
:class:`COCOEvaluator` follow: results in percent; pycocotools' -1 (nothing to average) becomes NaN; no
detections at all gives NaN everywhere; for masks the detections' ``bbox`` is ignored, so areas are mask
areas; a third ``max_dets`` other than 100 is used for AP as in its ``COCOevalMaxDets``.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from xfer import d2compat
from xfer.benchmarks.coco_arrays import AP_NAMES, IOU_THRESHOLDS, CocoTruth, precision_recall
from xfer.benchmarks.coco_engine import HOTCOCO_MISSING, NEGATIVE_ID, hotcoco_module

d2compat.ensure()

from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.data.datasets.coco import convert_to_coco_dict  # noqa: E402
from detectron2.evaluation import DatasetEvaluator  # noqa: E402
from detectron2.evaluation.coco_evaluation import instances_to_coco_json  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.file_io import PathManager  # noqa: E402
from detectron2.utils.logger import create_small_table  # noqa: E402

# An optional dependency (no wheel for every platform; an install can be broken): the NumPy engine gives the same
# numbers. Imported as the launch's note decided (xfer.benchmarks.coco.evaluation_notes), by the same function.
hotcoco = hotcoco_module()[0]

log = logging.getLogger(__name__)
ENGINES = ("auto", "hotcoco", "numpy")
__all__ = ["COCOEvaluator", "CocoEval", "CocoTruth", "coco_eval", "evaluate", "stat_names", "summary",
           "zero_id_categories"]


def stat_names(max_dets: tuple[int, ...] = (1, 10, 100)) -> tuple[str, ...]:
    """The 12 names, pycocotools' order: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl."""
    m = sorted(max_dets)
    return AP_NAMES + (f"AR{m[0]}", f"AR{m[1]}", f"AR{m[2]}", "ARs", "ARm", "ARl")


@dataclass
class CocoEval:
    """What ``COCOeval.accumulate``/``summarize`` leave: ``stats`` (12, fractions, -1 = nothing to
    average), ``precision`` [T, R, K, A, M] and ``recall`` [T, K, A, M]; and the engine that ran."""

    stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    max_dets: tuple[int, ...]
    engine: str


def coco_eval(gt: CocoTruth | dict | str | os.PathLike, detections: list[dict], iou_type: str,
              max_dets: tuple[int, ...] = (1, 10, 100), engine: str = "auto") -> CocoEval:  # fmt: skip
    """pycocotools' ``loadRes`` + ``COCOeval(gt, dt, iou_type)`` evaluate/accumulate/summarize.
    ``engine``: "auto" (hotcoco, or numpy where :func:`hotcoco_takes` says why not), "hotcoco" or "numpy"."""
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', not {iou_type!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    max_dets = tuple(sorted(int(m) for m in max_dets))
    if len(max_dets) < 3:
        raise ValueError("max_dets needs at least 3 entries, as COCOeval's summary reads three")
    with _gc_paused():
        truth = gt if isinstance(gt, CocoTruth) else CocoTruth(gt)
        if engine == "auto":
            engine = "hotcoco" if hotcoco_takes(truth) is None else "numpy"
        elif engine == "hotcoco" and hotcoco is None:
            raise ImportError(f"engine 'hotcoco': {_hotcoco_missing()} (pip install 'xfer[coco]'), use 'numpy'")
        run = _hotcoco if engine == "hotcoco" else precision_recall
        precision, recall = run(truth, detections, iou_type, max_dets)
    return CocoEval(summary(precision, recall, max_dets), precision, recall, max_dets, engine)


def hotcoco_takes(truth: CocoTruth) -> str | None:
    """Why the "auto" engine leaves ``truth`` to NumPy, or None when hotcoco evaluates it: hotcoco is not
    installed, or failed to import; or it refuses negative ids (``ValueError ... expected a non-negative integer``,
    where pycocotools scores them). (An annotation id 0 stays with hotcoco: see :func:`zero_id_categories`.)"""
    if hotcoco is None:
        return _hotcoco_missing()
    if any((ids < 0).any() for ids in (truth.ids, truth.img_ids, truth.cat_ids)):
        return NEGATIVE_ID
    return None


def _hotcoco_missing() -> str:
    """Why hotcoco is not here, in the launch's words (``hotcoco`` may also have been set to None by hand)."""
    return hotcoco_module()[1] or HOTCOCO_MISSING


def zero_id_categories(truth: CocoTruth) -> list[int]:
    """Positions (in ``truth.cat_ids``) of the categories holding an annotation of id 0, whose matches pycocotools
    does not count and hotcoco does: the hotcoco engine leaves their slices to the NumPy engine."""
    return np.unique(truth.cat[truth.ids == 0]).tolist()


def _one_category(truth: CocoTruth, k: int) -> CocoTruth:
    """``truth`` restricted to its ``k``-th category (every image kept, as ``Params.imgIds`` keeps them); cached."""
    key = ("category", k)
    if key not in truth.cache:
        cat_id = int(truth.cat_ids[k])
        truth.cache[key] = CocoTruth({
            "images": truth.dataset["images"],
            "categories": [c for c in truth.dataset["categories"] if c["id"] == cat_id],
            "annotations": [truth.anns[i] for i in np.flatnonzero(truth.cat == k).tolist()]})  # fmt: skip
    return truth.cache[key]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while the evaluation allocates its (acyclic) per-detection objects:
    with a dataset's millions of objects alive, each collection walks them all (seconds at val2017 scale)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _hotcoco(truth: CocoTruth, detections: list[dict], iou_type: str,
             max_dets: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """hotcoco's ``COCOeval`` evaluate + accumulate; its ``COCO`` of the ground truth is built once."""
    if "hotcoco" not in truth.cache:
        truth.cache["hotcoco"] = hotcoco.COCO(truth.dataset)
    coco = truth.cache["hotcoco"]
    images, cats = set(truth.img_ids.tolist()), set(truth.cat_ids.tolist())
    if not images.issuperset(d["image_id"] for d in detections):
        raise ValueError("Results do not correspond to current coco set: a detection's image is not in it")
    if iou_type == "segm":  # as detectron2 passes them: without the box, so areas are mask areas
        dets = [{k: v for k, v in d.items() if k != "bbox"} for d in detections if d["category_id"] in cats]
    else:
        dets = [d for d in detections if d["category_id"] in cats]
    ev = hotcoco.COCOeval(coco, coco.loadRes(dets), iou_type)
    ev.params.maxDets = list(max_dets)  # a live object: assigning a whole value reaches the evaluator
    ev.evaluate()
    ev.accumulate()
    precision, recall = np.array(ev.eval["precision"]), np.array(ev.eval["recall"])
    for k in zero_id_categories(truth):  # pycocotools' reading of a match to id 0, for those categories only
        part = _one_category(truth, k)
        cat_id = int(part.cat_ids[0])
        p, r = precision_recall(part, [d for d in detections if d["category_id"] == cat_id], iou_type, max_dets)
        precision[:, :, k], recall[:, k] = p[:, :, 0], r[:, 0]
    return precision, recall


def summary(precision: np.ndarray, recall: np.ndarray, max_dets: tuple[int, ...]) -> np.ndarray:
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
             max_dets: tuple[int, ...] = (1, 10, 100), engine: str = "auto") -> dict[str, float]:  # fmt: skip
    """The 12 COCO numbers in percent under detectron2's names (AP, AP50, ..., and AR1, AR10, AR100, ARs,
    ARm, ARl), NaN where pycocotools gives -1, and NaN everywhere without detections (detectron2's rule)."""
    names = stat_names(max_dets)
    if not detections:
        return {name: float("nan") for name in names}
    stats = coco_eval(gt, detections, iou_type, max_dets, engine).stats
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
                 write_results: bool = False, engine: str = "auto") -> None:  # fmt: skip
        self._metadata = MetadataCatalog.get(dataset_name)
        self._tasks = tasks
        self._distributed = distributed
        self._output_dir = output_dir if write_results else None
        self._max_dets = (1, 10, 100 if max_dets_per_image is None else max_dets_per_image)
        self._engine = engine
        if hasattr(self._metadata, "json_file"):
            gt = PathManager.get_local_path(self._metadata.json_file)
        else:  # detectron2 writes <output_dir>/<name>_coco_format.json first; the dict is all it needs
            gt = convert_to_coco_dict(dataset_name)
        self._truth = CocoTruth(gt)
        self.reset()

    def reset(self) -> None:
        self._predictions: list[dict] = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
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
        if self._engine == "auto" and (why := hotcoco_takes(self._truth)):
            log.info("COCO evaluation on xfer's NumPy engine (pycocotools' numbers): %s", why)
        elif self._engine in ("auto", "hotcoco") and zero_id_categories(self._truth):
            log.info("COCO evaluation on hotcoco; the category holding an annotation id 0 on xfer's NumPy engine, "
                     "since pycocotools does not count a match to it")
        return OrderedDict((task, self._task_results(results, task)) for task in sorted(tasks))

    def _task_results(self, results: list[dict], task: str) -> dict[str, float]:
        """detectron2's ``_derive_coco_results``: percent, -1 as NaN, and AP per class (all areas, the
        largest max_dets); NaN everywhere when there is no detection at all."""
        if not results:
            log.warning("No predictions from the model!")
            return {name: float("nan") for name in AP_NAMES}
        ev = coco_eval(self._truth, results, task, self._max_dets, self._engine)
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
