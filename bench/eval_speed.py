"""VOC evaluation time, xfer's evaluator vs detectron2's PascalVOCDetectionEvaluator, at VOC07-test scale.

Generates a VOC07-test-sized split (4,952 images, 1-5 objects each over the 20 classes, ~1 in 8 difficult)
and 100 detections per image (a third of them jittered ground truth, scores with ties), then times
process() + evaluate() of both evaluators on the same inputs, median of ``--repeats``, and prints the
ratio and the largest |ΔAP| over all classes and thresholds (detectron2's per-class APs are recomputed
with its own voc_eval on its own files).

    python bench/eval_speed.py --repeats 3            # about 4 minutes on 2 cores, most of it detectron2
    python bench/eval_speed.py --images 500 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def detections(root: Path, ids: list[str], per_image: int, rng: np.random.Generator):
    import torch
    from detectron2.structures import Boxes, Instances

    from xfer.benchmarks.voc import VOC_CLASSES
    from xfer.benchmarks.voc_eval import parse_annotation

    inputs, outputs = [], []
    for i in ids:
        gt = parse_annotation(str(root / "Annotations" / f"{i}.xml"))
        xy = rng.uniform(0, 450, (per_image, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 200, (per_image, 2))], axis=1)
        classes = rng.integers(0, 20, per_image)
        for k in range(per_image // 3):
            name, _, box = gt[k % len(gt)]
            boxes[k] = np.array(box, dtype=np.float64) - [1, 1, 0, 0] + rng.normal(0, 6, 4)
            classes[k] = VOC_CLASSES.index(name)
        scores = np.round(rng.random(per_image), 2)  # ties
        inst = Instances((500, 500), pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
                         scores=torch.tensor(scores, dtype=torch.float32),
                         pred_classes=torch.tensor(classes, dtype=torch.int64))  # fmt: skip
        inputs.append({"image_id": i})
        outputs.append({"instances": inst})
    return inputs, outputs


def run(evaluator, inputs, outputs, batch: int = 8) -> tuple[float, dict]:
    t0 = time.perf_counter()
    evaluator.reset()
    for s in range(0, len(inputs), batch):
        evaluator.process(inputs[s : s + batch], outputs[s : s + batch])
    result = evaluator.evaluate()["bbox"]
    return time.perf_counter() - t0, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4952)
    parser.add_argument("--per-image", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from xfer import d2compat

    d2compat.ensure()
    from detectron2.evaluation import PascalVOCDetectionEvaluator

    sys.path.insert(0, str(REPO / "tests"))
    from test_voc_eval import reference_per_class, write_dataset

    from xfer.benchmarks.voc import VOC_CLASSES
    from xfer.benchmarks.voc_eval import VOCEvaluator

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="xfer-eval-") as tmp:
        root = Path(tmp) / "VOC2007"
        name, ids = write_dataset(root, rng, 2007, images=args.images, objects=(1, 6), corner=400, size=(10, 200),
                                  classes=VOC_CLASSES, difficult=0.125)  # fmt: skip
        inputs, outputs = detections(root, ids, args.per_image, rng)
        with np.errstate(all="ignore"):
            ours, theirs = [], []
            for i in range(args.repeats):
                ev_x, ev_d = VOCEvaluator(name), PascalVOCDetectionEvaluator(name)
                t_x, r_x = run(ev_x, inputs, outputs)
                t_d, r_d = run(ev_d, inputs, outputs)
                ours.append(t_x)
                theirs.append(t_d)
                print(f"repeat {i}: xfer {t_x:.2f} s, detectron2 {t_d:.2f} s", flush=True)
            reference = reference_per_class(ev_d)
        delta = max(abs(a - b) for t in reference for a, b in zip(ev_x.per_class[t], reference[t], strict=True))
        top = max(abs(r_x[k] - r_d[k]) for k in ("AP", "AP50", "AP75"))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{args.images} images x {args.per_image} detections, median of {args.repeats} (process + evaluate):")
    print(f"  xfer {a:.2f} s | detectron2 {b:.2f} s | {b / a:.1f}x faster")
    print(f"  AP50/AP/AP75 xfer {r_x['AP50']:.4f}/{r_x['AP']:.4f}/{r_x['AP75']:.4f}; max |dAP| overall {top:.2e}, "
          f"per class and threshold {delta:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
