"""xfer's VOC evaluator against detectron2's own, on many random small datasets (hypothesis)."""

from __future__ import annotations

import itertools
import math
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO
from xfer import d2compat, smoke
from xfer.benchmarks import voc_eval
from xfer.benchmarks.voc import VOC_CLASSES

d2compat.ensure()
from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.evaluation import PascalVOCDetectionEvaluator  # noqa: E402
from detectron2.evaluation import pascal_voc_evaluation as d2_voc  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402

_names = itertools.count()
USED = VOC_CLASSES[:4]  # few classes in use: most of the 20 have no ground truth or no detections


def write_dataset(root: Path, rng: np.random.Generator, year: int, images: int | None = None, objects=(0, 5),
                  corner: int = 60, size=(0, 40), classes=USED, difficult: float = 0.25) -> tuple[str, list[str]]:  # fmt: skip
    """A random VOC split on disk (integer boxes, difficult flags) registered as detectron2 metadata:
    ``images`` images (1-5 when None), each with ``objects`` (low, high) objects of ``classes``."""
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    ids = [f"{i:06d}" for i in range(images if images is not None else int(rng.integers(1, 6)))]
    for i in ids:
        objs = []
        for _ in range(int(rng.integers(*objects))):
            x1, y1 = (int(v) for v in rng.integers(0, corner, 2))
            w, h = (int(v) for v in rng.integers(*size, 2))
            objs.append(f"<object><name>{rng.choice(classes)}</name><pose>x</pose><truncated>0</truncated>"
                        f"<difficult>{int(rng.random() < difficult)}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                        f"<xmax>{x1 + w}</xmax><ymax>{y1 + h}</ymax></bndbox></object>")  # fmt: skip
        (root / "Annotations" / f"{i}.xml").write_text(f"<annotation>{''.join(objs)}</annotation>")
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids) + "\n")
    name = f"xfer_voc_eval_test_{next(_names)}"
    MetadataCatalog.get(name).set(thing_classes=list(VOC_CLASSES), dirname=str(root), year=year, split="test")
    return name, ids


def random_outputs(rng: np.random.Generator, root: Path, ids: list[str]) -> tuple[list[dict], list[dict]]:
    """Detections with many tied scores, boxes partly outside the image or inverted, some images empty, and
    jittered copies of ground truth (true positives, duplicates, hits on difficult objects)."""
    inputs, outputs = [], []
    for i in ids:
        n = int(rng.integers(0, 9))
        xy = rng.uniform(-10, 70, (n, 2))
        wh = rng.uniform(-3, 45, (n, 2))  # some inverted: x2 < x1
        boxes = np.concatenate([xy, xy + wh], axis=1)
        classes = rng.choice(len(USED) + 1, n)
        gt = voc_eval.parse_annotation(str(root / "Annotations" / f"{i}.xml"))
        for k in range(n):
            if gt and rng.random() < 0.6:
                name, _, box = gt[int(rng.integers(len(gt)))]
                boxes[k] = np.array(box, dtype=np.float64) - [1, 1, 0, 0] + rng.normal(0, 2, 4)
                classes[k] = VOC_CLASSES.index(name) if rng.random() < 0.9 else classes[k]
        scores = torch.tensor(rng.choice([0.1, 0.5, 0.5, 0.5004, 0.5006, 0.9, 0.95], n), dtype=torch.float32)
        inst = Instances((80, 80), pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)), scores=scores,
                         pred_classes=torch.tensor(classes, dtype=torch.int64))  # fmt: skip
        inputs.append({"image_id": i})
        outputs.append({"instances": inst})
    return inputs, outputs


def reference_per_class(ev: PascalVOCDetectionEvaluator) -> dict[int, list[float]]:
    """detectron2's evaluate() loop, keeping each class's AP (its files, its voc_eval)."""
    aps = defaultdict(list)
    with tempfile.TemporaryDirectory() as d:
        template = os.path.join(d, "{}.txt")
        for cls_id, cls_name in enumerate(ev._class_names):
            with open(template.format(cls_name), "w") as f:
                f.write("\n".join(ev._predictions.get(cls_id, [""])))
            for t in range(50, 100, 5):
                _, _, ap = d2_voc.voc_eval(template, ev._anno_file_template, ev._image_set_path, cls_name,
                                           ovthresh=t / 100.0, use_07_metric=ev._is_2007)  # fmt: skip
                aps[t].append(ap * 100)
    return aps


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9


@pytest.mark.launch
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), year=st.sampled_from([2007, 2012]))
def test_identical_to_detectron2_on_random_datasets(tmp_path_factory, seed, year):
    rng = np.random.default_rng(seed)
    root = tmp_path_factory.mktemp("voc")
    name, ids = write_dataset(root, rng, year)
    inputs, outputs = random_outputs(rng, root, ids)
    ours, theirs = voc_eval.VOCEvaluator(name), PascalVOCDetectionEvaluator(name)
    for ev in (ours, theirs):
        ev.reset()
        ev.process(inputs, outputs)
    with np.errstate(all="ignore"):
        got, want = ours.evaluate()["bbox"], theirs.evaluate()["bbox"]
        reference = reference_per_class(theirs)
    for t in range(50, 100, 5):
        for c, (a, b) in enumerate(zip(ours.per_class[t], reference[t], strict=True)):
            assert same(a, b), (t, VOC_CLASSES[c], a, b)
    for k in ("AP", "AP50", "AP75"):
        assert same(got[k], want[k]), (k, got[k], want[k])


def test_the_random_datasets_exercise_matching(tmp_path):
    """Guards the property test above: datasets drawn as it draws them give partial APs, not only 0s and NaNs."""
    partial = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        name, ids = write_dataset(tmp_path / str(seed), rng, 2007)
        ev = evaluated(voc_eval.VOCEvaluator(name), *random_outputs(rng, tmp_path / str(seed), ids))
        partial += any(0 < a < 100 for a in ev.per_class[50])
    assert partial >= 10, f"only {partial} of 40 datasets had a class with a partial AP"


def test_rounding_matches_text_formatting_at_ties():
    values = np.array([0.25, 0.35, 1.15, 2.675, -0.05, 12.45, 1e-7, 99.95], dtype=np.float64)
    assert list(voc_eval.round_like_text(values, 1)) == [float(f"{v:.1f}") for v in values]
    assert list(voc_eval.round_like_text(values, 3)) == [float(f"{v:.3f}") for v in values]
    f32 = np.float32([0.1, 0.2, 0.3, 0.5005, 0.9995])
    assert list(voc_eval.round_like_text(f32, 3)) == [float(f"{float(v):.3f}") for v in f32]


def evaluated(ev, inputs: list[dict], outputs: list[dict]):
    ev.reset()
    ev.process(inputs, outputs)
    with np.errstate(all="ignore"):
        ev.result = ev.evaluate()["bbox"]
    return ev


def detections(image_id: str, dets: list[tuple[str, float, tuple[int, int, int, int]]]) -> tuple[dict, dict]:
    """One image's model output: (class, score, VOC box) each; VOC's 1-based (x1, y1) become detectron2's x1 - 1."""
    boxes = torch.tensor([[x1 - 1, y1 - 1, x2, y2] for _, _, (x1, y1, x2, y2) in dets], dtype=torch.float32)
    inst = Instances((100, 100), pred_boxes=Boxes(boxes.reshape(-1, 4)),
                     scores=torch.tensor([s for _, s, _ in dets], dtype=torch.float32),
                     pred_classes=torch.tensor([VOC_CLASSES.index(c) for c, _, _ in dets], dtype=torch.int64))  # fmt: skip
    return {"image_id": image_id}, {"instances": inst}


def write_voc(root: Path, year: int, images: dict[str, list[tuple[str, int, tuple[int, int, int, int]]]]) -> str:
    """A VOC test split written by hand: image id -> its objects (class, difficult, VOC box)."""
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for i, objs in images.items():
        xml = "".join(f"<object><name>{c}</name><pose>x</pose><truncated>0</truncated><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}"
                      f"</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for c, d, b in objs)  # fmt: skip
        (root / "Annotations" / f"{i}.xml").write_text(f"<annotation>{xml}</annotation>")
    (root / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{i}\n" for i in images))
    name = f"xfer_voc_eval_test_{next(_names)}"
    MetadataCatalog.get(name).set(thing_classes=list(VOC_CLASSES), dirname=str(root), year=year, split="test")
    return name


# Worked by hand. aeroplane has 3 plain objects (g1, g2 in image 1, g3 in image 2) and a difficult one (g4);
# bicycle has 1 plain object and no detection; no other class has either. aeroplane's detections by score:
#   0.9  g1 exactly            TP
#   0.8  on nothing            FP
#   0.7  g4 exactly            ignored (difficult): neither TP nor FP
#   0.6  g1 again              FP (g1 is taken)
#   0.5  g2 exactly            TP
#   0.4  g3 moved 4 px right   IoU (16 * 20) / (400 + 400 - 320) = 2/3: TP at IoU > 0.50 ... 0.65, FP at 0.70 ... 0.95
# After each: precision 1/1, 1/2, 1/2, 1/3, 2/4, then 3/5 (TP) or 2/5 (FP); recall 1/3 four times, 2/3, then 1 or 2/3.
# VOC07, 11 points (max precision at recall >= t):
#   0.50-0.65: t = 0 ... 0.3 -> 1; t = 0.4 ... 1.0 (7 points) -> 3/5        AP = (4 + 7 * 0.6) / 11 = 8.2 / 11
#   0.70-0.95: t = 0 ... 0.3 -> 1; t = 0.4, 0.5, 0.6 -> max(2/4, 2/5) = 1/2; t = 0.7 ... 1.0 -> 0  AP = 5.5 / 11 = 1/2
# VOC2012, area under the precision envelope (recall steps of 1/3):
#   0.50-0.65: 1/3 * 1 + 1/3 * 0.6 + 1/3 * 0.6 = 2.2 / 3;   0.70-0.95: 1/3 * 1 + 1/3 * 1/2 + 1/3 * 0 = 1/2
# The mean over the 20 classes: aeroplane's AP / 20 (bicycle scores 0, the others 0 as VOC's code gives).
G1, G2, G3, G4, BIKE = (11, 11, 30, 30), (51, 11, 70, 30), (11, 11, 30, 30), (51, 51, 70, 70), (11, 51, 30, 70)
HAND_DATASET = {"000001": [("aeroplane", 0, G1), ("aeroplane", 0, G2)],
                "000002": [("aeroplane", 0, G3), ("aeroplane", 1, G4), ("bicycle", 0, BIKE)]}  # fmt: skip
HAND_DETECTIONS = {
    "000001": [("aeroplane", 0.9, G1), ("aeroplane", 0.8, (81, 81, 90, 90)), ("aeroplane", 0.6, G1),
               ("aeroplane", 0.5, G2)],
    "000002": [("aeroplane", 0.7, G4), ("aeroplane", 0.4, (15, 11, 34, 30))],
}  # fmt: skip
HAND_AEROPLANE = {2007: (8.2 / 11, 0.5), 2012: (2.2 / 3, 0.5)}  # (IoU 0.50-0.65, IoU 0.70-0.95)


@pytest.mark.parametrize("year", [2007, 2012])
@pytest.mark.parametrize("evaluator", ["xfer", "detectron2"])
def test_hand_worked_aps(tmp_path, year, evaluator):
    name = write_voc(tmp_path, year, HAND_DATASET)
    inputs, outputs = zip(*(detections(i, d) for i, d in HAND_DETECTIONS.items()), strict=True)
    kind = voc_eval.VOCEvaluator if evaluator == "xfer" else PascalVOCDetectionEvaluator
    ev = evaluated(kind(name), list(inputs), list(outputs))
    per_class = ev.per_class if evaluator == "xfer" else reference_per_class(ev)
    low, high = HAND_AEROPLANE[year]
    aeroplane = {t: 100 * (low if t <= 65 else high) for t in range(50, 100, 5)}
    for t in range(50, 100, 5):
        assert per_class[t] == pytest.approx([aeroplane[t]] + [0.0] * 19, abs=1e-9), t
    assert ev.result["AP50"] == pytest.approx(aeroplane[50] / 20, abs=1e-9)
    assert ev.result["AP75"] == pytest.approx(aeroplane[75] / 20, abs=1e-9)
    assert ev.result["AP"] == pytest.approx((4 * 100 * low + 6 * 100 * high) / 10 / 20, abs=1e-9)


def test_a_dataset_with_all_detections_perfect_scores_100(tmp_path):
    """Every object found exactly (difficult ones too): 100 for a class with a plain object; a class with only
    difficult objects or none has no positives, and VOC's code gives it 0."""
    rng = np.random.default_rng(0)
    name, ids = write_dataset(tmp_path / "voc", rng, 2007)
    inputs, outputs, plain = [], [], set()
    for i in ids:
        objs = ET.parse(tmp_path / "voc" / "Annotations" / f"{i}.xml").findall("object")
        plain |= {o.findtext("name") for o in objs if o.findtext("difficult") == "0"}
        boxes = [tuple(int(o.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")) for o in objs]
        inp, out = detections(i, [(o.findtext("name"), 1.0, b) for o, b in zip(objs, boxes, strict=True)])
        inputs.append(inp)
        outputs.append(out)
    assert plain and len(plain) < 20  # both cases occur
    want = [100.0 if c in plain else 0.0 for c in VOC_CLASSES]
    for kind in (voc_eval.VOCEvaluator, PascalVOCDetectionEvaluator):
        ev = evaluated(kind(name), inputs, outputs)
        per_class = ev.per_class if kind is voc_eval.VOCEvaluator else reference_per_class(ev)
        for t in range(50, 100, 5):
            assert per_class[t] == pytest.approx(want, abs=1e-9), (kind.__name__, t)


def test_both_evaluators_score_detections_built_from_the_smoke_ground_truth(tmp_path):
    """The smoke benchmark's generated test split, with detections made from its annotation files: per class,
    one false positive first (0.9), a hit on each difficult object (0.7, ignored), each plain object exactly
    (0.5), each again (0.3, duplicates). A class with n plain objects then has precision k / (k + 1) at recall
    k / n, so its AP is n / (n + 1) at every IoU threshold, in both VOC metrics; 0 with none."""
    import yaml

    gen = yaml.safe_load((REPO / "conf" / "benchmark" / "smoke.yaml").read_text())["smoke"]
    voc = smoke.ensure_dataset(tmp_path, gen["images"], tuple(gen["image_size"])) / "VOC2007"
    name = f"xfer_voc_eval_test_{next(_names)}"
    MetadataCatalog.get(name).set(thing_classes=list(VOC_CLASSES), dirname=str(voc), year=2007, split="test")
    ids = (voc / "ImageSets" / "Main" / "test.txt").read_text().split()
    inputs, outputs, n = [], [], dict.fromkeys(VOC_CLASSES, 0)
    for k, i in enumerate(ids):
        dets = [(c, 0.9, (1, 1, 2, 2)) for c in VOC_CLASSES] if k == 0 else []  # 2x2 px: IoU < 0.05 with any object
        for obj in ET.parse(voc / "Annotations" / f"{i}.xml").findall("object"):
            box = tuple(int(obj.find("bndbox").findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
            cls, difficult = obj.findtext("name"), obj.findtext("difficult") == "1"
            dets += [(cls, 0.7, box)] if difficult else [(cls, 0.5, box), (cls, 0.3, box)]
            n[cls] += not difficult
        inp, out = detections(i, dets)
        inputs.append(inp)
        outputs.append(out)
    want = [100 * n[c] / (n[c] + 1) for c in VOC_CLASSES]
    expected = sum(want) / 20
    assert 0 < expected < 100 and sum(n.values()) >= 20  # a known, non-trivial AP
    for kind in (voc_eval.VOCEvaluator, PascalVOCDetectionEvaluator):
        ev = evaluated(kind(name), inputs, outputs)
        per_class = ev.per_class if kind is voc_eval.VOCEvaluator else reference_per_class(ev)
        assert per_class[50] == pytest.approx(want, abs=1e-9) and per_class[95] == pytest.approx(want, abs=1e-9)
        for metric in ("AP50", "AP", "AP75"):
            assert ev.result[metric] == pytest.approx(expected, abs=1e-9), (kind.__name__, metric)
