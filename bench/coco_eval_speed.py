"""COCO evaluation time, xfer.benchmarks.coco_eval vs pycocotools' COCOeval, at val2017 scale, side by side.

Generates (and caches under .cache/bench/) a val2017-sized set: 5,000 images of 240-640 pixels, 80
categories, ~36k ground-truth polygons (some multi-part, 1% crowd, mostly as uncompressed RLE), and 100
detections per image with RLE masks, most of them jittered copies of ground truth, the rest random shapes
of a few categories per image; scores with ties (tests/coco_random.py). Then times, in this process, the
whole evaluation from the ground-truth dict and the detection list to the 12 numbers, for bbox and segm:
pycocotools (``COCO`` + ``loadRes`` + ``evaluate/accumulate/summarize``, on deep copies made outside the
timer, since it modifies its inputs) and ours (``coco_eval``: "xfer" is the default engine, hotcoco, and
"xfer-numpy" the vectorized one), median of ``--repeats``; prints seconds and the ratios and asserts that
the 12 numbers agree to 1e-9. ``--also`` times the libraries considered, called directly, for the record
(faster-coco-eval with one IoU thread). hotcoco runs on one thread (RAYON_NUM_THREADS=1) unless told
otherwise, so that every column is one core's time. Ours pauses Python's cyclic garbage collector while it
runs (xfer.benchmarks.coco_eval._gc_paused); ``--no-gc`` pauses it for every contender, pycocotools included,
to show what that alone is worth. A full collection runs before each timer, so that no contender pays for
the collections that its predecessor's garbage made due (2 s at this scale).

    OMP_NUM_THREADS=1 python bench/coco_eval_speed.py --images 500 --repeats 3
    OMP_NUM_THREADS=1 python bench/coco_eval_speed.py --repeats 3         # full val2017 scale
    OMP_NUM_THREADS=1 python bench/coco_eval_speed.py --repeats 3 --zero-id   # annotation ids from 0

``--zero-id`` numbers the annotations from 0, as converted datasets often do: pycocotools then reads a match to
the first annotation as none, and "xfer" scores that annotation's category on its NumPy engine, the rest on
hotcoco.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import hashlib
import io
import os
import pickle
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # hotcoco's thread pool, read when it first runs

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.coco_random import dataset  # noqa: E402
from xfer.benchmarks.coco_eval import coco_eval  # noqa: E402


def data(images: int, seed: int, cache: bool) -> tuple[dict, list[dict]]:
    version = hashlib.sha1((REPO / "tests" / "coco_random.py").read_bytes()).hexdigest()[:8]  # the generator's
    path = REPO / ".cache" / "bench" / f"coco_eval_{images}_{seed}_{version}.pkl"
    if cache and path.exists():
        with open(path, "rb") as f:
            return pickle.load(f)
    t0 = time.perf_counter()
    out = dataset(seed, images=images, categories=80, gt_per_image=8.6, dets_per_image=(100, 101),
                  size=(240, 640), crowd=0.01, crowded_group=False, confusable=4, undetected=False,
                  empty=0.01)  # fmt: skip
    print(f"generated in {time.perf_counter() - t0:.1f} s", flush=True)
    if not cache:
        return out
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(out, f, protocol=pickle.HIGHEST_PROTOCOL)
    # Time the objects as a later run will have them: freshly unpickled. The generator's own objects, scattered
    # over a heap full of its garbage, made xfer's engine 3x slower in the run that generated them.
    del out
    gc.collect()
    with open(path, "rb") as f:
        return pickle.load(f)


def inputs(gt: dict, dets: list[dict], iou_type: str) -> tuple[dict, list[dict]]:
    """Fresh copies, with the box dropped from mask results as detectron2 does."""
    gt, dets = copy.deepcopy(gt), copy.deepcopy(dets)
    if iou_type == "segm":
        for d in dets:
            d.pop("bbox", None)
    return gt, dets


def pycocotools(gt: dict, dets: list[dict], iou_type: str) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def faster_coco_eval(gt: dict, dets: list[dict], iou_type: str) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    coco = COCO(gt)
    ev = COCOeval_faster(coco, coco.loadRes(dets), iou_type, print_function=lambda *a, **k: None,
                         rle_iou_max_workers=1)  # fmt: skip
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return np.asarray(ev.stats[:12])


def hotcoco(gt: dict, dets: list[dict], iou_type: str) -> np.ndarray:
    import hotcoco

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        coco = hotcoco.COCO(gt)
        ev = hotcoco.COCOeval(coco, coco.loadRes(dets), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats[:12])


def ours(gt: dict, dets: list[dict], iou_type: str) -> np.ndarray:
    return coco_eval(gt, dets, iou_type).stats  # engine "auto": hotcoco (with --zero-id, but for one category)


def ours_numpy(gt: dict, dets: list[dict], iou_type: str) -> np.ndarray:
    return coco_eval(gt, dets, iou_type, engine="numpy").stats


RUNNERS = {"pycocotools": pycocotools, "xfer": ours, "xfer-numpy": ours_numpy, "faster-coco-eval": faster_coco_eval,
           "hotcoco": hotcoco}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--types", default="bbox,segm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--also", default="", help="comma-separated: faster-coco-eval, hotcoco")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--zero-id", action="store_true", help="annotation ids 0, 1, 2, ...")
    parser.add_argument("--no-gc", action="store_true", help="cyclic GC off for every contender, not only ours")
    args = parser.parse_args()
    if args.no_gc:
        gc.disable()
    gt, dets = data(args.images, args.seed, not args.no_cache)
    if args.zero_id:
        for i, a in enumerate(gt["annotations"]):
            a["id"] = i
    print(f"{len(gt['images'])} images, {len(gt['categories'])} categories, {len(gt['annotations'])} ground truth "
          f"({sum(a['iscrowd'] for a in gt['annotations'])} crowd), {len(dets)} detections", flush=True)  # fmt: skip
    names = ["pycocotools", "xfer", "xfer-numpy"] + [n for n in args.also.split(",") if n]
    for iou_type in args.types.split(","):
        times: dict[str, list[float]] = {n: [] for n in names}
        stats: dict[str, np.ndarray] = {}
        for r in range(args.repeats):
            for n in names:
                g, d = (gt, dets) if n.startswith("xfer") else inputs(gt, dets, iou_type)  # ours modifies nothing
                gc.collect()  # no contender pays for the collections its predecessor's garbage has made due
                t0 = time.perf_counter()
                stats[n] = RUNNERS[n](g, d, iou_type)
                times[n].append(time.perf_counter() - t0)
                del g, d
            print(f"{iou_type} repeat {r}: " + ", ".join(f"{n} {times[n][-1]:.2f} s" for n in names), flush=True)
        ref = statistics.median(times["pycocotools"])
        print(f"{iou_type}, {args.images} images, median of {args.repeats}:")
        for n in names:
            med = statistics.median(times[n])
            diff = float(np.max(np.abs(stats[n] - stats["pycocotools"])))
            print(f"  {n:17s} {med:8.2f} s  {ref / med:6.1f}x   max |d stat| vs pycocotools {diff:.1e}")
        print(f"  stats {np.round(stats['pycocotools'], 4).tolist()}", flush=True)
        for n in ("xfer", "xfer-numpy"):
            assert np.max(np.abs(stats[n] - stats["pycocotools"])) <= 1e-9, (n, stats[n], stats["pycocotools"])


if __name__ == "__main__":
    main()
