"""The COCO dataset check refuses, before anything runs, the instances files that detectron2's loader, pycocotools
or hotcoco would fail on later (some only after training, when the test set is scored); each case shows the outside
library failing on the very file the check refused. Files it must keep accepting are scored by pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.test_coco_format import write_coco
from xfer import d2compat
from xfer.benchmarks import coco, coco_engine

REPO = Path(__file__).resolve().parents[1]
DETECTION = {"image_id": 7, "category_id": 1, "bbox": [4, 5, 20, 10], "score": 0.9}  # on the first image


def rewrite(path: Path, change: Callable[[dict], object]) -> dict:
    """The instances file at ``path`` with ``change`` applied to its data (in place); the data."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return data


def check(root: Path) -> list[str]:
    return coco.problems(root, ["coco_2017_val"], cache=root / "cache")


# ---- The outside libraries, as a trial would meet the file ------------------------------------------------------


def detectron2_loads(path: Path) -> None:
    """detectron2's COCO loader, as the trial's DatasetCatalog calls it (for a test set: after training)."""
    d2compat.ensure()
    from detectron2.data.datasets.coco import load_coco_json

    load_coco_json(str(path), str(path.parents[1] / "val2017"), None)


def detectron2_trains_masks(path: Path) -> None:
    """What the trainer's DatasetMapper does with each image under MODEL.MASK_ON: crowd regions dropped, the rest
    made into Instances with polygon masks (detectron2's annotations_to_instances)."""
    d2compat.ensure()
    from detectron2.data.datasets.coco import load_coco_json
    from detectron2.data.detection_utils import annotations_to_instances

    for record in load_coco_json(str(path), str(path.parents[1] / "val2017"), None):
        annos = [a for a in record["annotations"] if not a.get("iscrowd", 0)]
        annotations_to_instances(annos, (record["height"], record["width"]), mask_format="polygon")


def pycocotools_scores(path: Path, iou_type: str = "bbox") -> None:
    """pycocotools' COCO + loadRes + COCOeval.evaluate, as detectron2's COCOEvaluator runs it after training."""
    from pycocotools import mask as mask_util
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rle = mask_util.encode(np.asfortranarray(np.ones((48, 64), dtype=np.uint8)))
    det = DETECTION | {"segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        det["image_id"] = gt.dataset["images"][0]["id"]
        ev = COCOeval(gt, gt.loadRes([det]), iou_type)
        ev.evaluate()
        ev.accumulate()


def hotcoco_loads(path: Path) -> None:
    """hotcoco's ground truth, as xfer's evaluator builds it (``hotcoco.COCO`` of the parsed file)."""
    hotcoco = pytest.importorskip("hotcoco")
    hotcoco.COCO(json.loads(path.read_text()))


def _image(key: str, value: object = None) -> Callable[[dict], None]:
    """Image 7 without ``key`` (or with ``value``), and without the annotation on it when its id changes: one
    problem per case."""

    def change(d: dict) -> None:
        if value is None:
            del d["images"][0][key]
        else:
            d["images"][0][key] = value
        if key == "id":
            d["annotations"] = d["annotations"][1:]

    return change


def _annotation(i: int, **values: object) -> Callable[[dict], None]:
    """Annotation ``i`` with ``values``; a value of ``...`` removes the key."""

    def change(d: dict) -> None:
        for k, v in values.items():
            d["annotations"][i].pop(k) if v is ... else d["annotations"][i].__setitem__(k, v)

    return change


def _second_square(segmentation: object = ...) -> Callable[[dict], None]:
    """A second square on image 7 whose segmentation is ``segmentation`` (absent by default), the first keeping its
    polygon: a mask file with a hole in it."""

    def change(d: dict) -> None:
        ann = {"id": 3, "image_id": 7, "category_id": 1, "bbox": [30, 20, 10, 10], "area": 100, "iscrowd": 0}
        d["annotations"].append(ann if segmentation is ... else ann | {"segmentation": segmentation})

    return change


def _category_id(d: dict) -> None:
    d["categories"][0]["id"] = 1.5
    d["annotations"] = d["annotations"][1:]


MALFORMED = {  # case: (change, what the check says, the outside library that fails on it later, and how)
    "image without height": (_image("height"), "image 7 has width, height [64, None], not two positive integers",
                             detectron2_loads, KeyError),
    "image without width": (_image("width"), "image 7 has width, height [None, 48]", detectron2_loads, KeyError),
    "image without file_name": (_image("file_name"), "image 7 has file_name None, not a file name",
                                detectron2_loads, KeyError),
    "image without id": (_image("id"), "image 'a.jpg' has id None, not an integer", pycocotools_scores, KeyError),
    "annotation without area": (_annotation(0, area=...), "annotation 1 has area None, not a number (pycocotools'",
                                pycocotools_scores, KeyError),
    "duplicate annotation ids": (_annotation(1, id=1), "annotation ids are not unique: 1 (2 times); give each "
                                 "annotation its own id", detectron2_loads, AssertionError),
    "annotation id 2.5": (_annotation(0, id=2.5), "annotation 2.5 has an id that is not an integer", hotcoco_loads,
                          ValueError),
    "annotation id true": (_annotation(0, id=True), "annotation True has an id that is not an integer",
                           hotcoco_loads, ValueError),
    "image id 7.5": (_image("id", 7.5), "image 'a.jpg' has id 7.5, not an integer", hotcoco_loads, ValueError),
    "category id 1.5": (_category_id, "1 of 2 categories are unusable: category 1.5 'square'", hotcoco_loads,
                        ValueError),
    "annotation category_id 1.5": (_annotation(0, category_id=1.5), "annotation 1 names category_id 1.5",
                                   hotcoco_loads, ValueError),
    "polygon with a string": (_annotation(0, segmentation=[[4, 5, "x", 5, 24, 15, 4, 15]]),
                              "annotation 1 has a polygon coordinate that is not a number",
                              lambda p: pycocotools_scores(p, "segm"), ValueError),
    "null segmentation among masks": (_second_square(None), "annotation 3 has no segmentation, though other "
                                      "annotations of the file have one", detectron2_trains_masks, KeyError),
    "missing segmentation among masks": (_second_square(), "annotation 3 has no segmentation",
                                         detectron2_trains_masks, KeyError),
    "crowd region without segmentation": (_annotation(1, segmentation=None), "annotation 2 has no segmentation",
                                          lambda p: pycocotools_scores(p, "segm"), TypeError),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_file_that_fails_later_is_refused_before_anything_runs(tmp_path, case):
    change, said, library, raises = MALFORMED[case]
    path = write_coco(tmp_path)
    rewrite(path, change)
    found = check(tmp_path)
    assert len(found) == 1 and said in found[0], found
    assert found[0].startswith(f"dataset coco_2017_val: {path.resolve()}: "), found  # the whole path, not its name
    with pytest.raises(raises):  # the oracle: what would have failed after training, on the same file
        library(path)


@pytest.mark.parametrize("change", [
    lambda d: None,  # as written: a polygon, and a crowd region as uncompressed RLE
    _annotation(0, id=0),  # an annotation id 0: pycocotools' quirk, scored by the NumPy engine for its category
    _annotation(0, id=-1),  # negative ids: pycocotools scores them (hotcoco refuses; the NumPy engine takes them)
    lambda d: (d["images"][0].update(id=-7), d["annotations"][0].update(image_id=-7)),
    lambda d: d["categories"].append({"id": 5, "name": "cross"}),  # a category with no annotation
    lambda d: [a.pop("segmentation") for a in d["annotations"]],  # box-only: no annotation has a segmentation
    lambda d: [a.update(segmentation=None) for a in d["annotations"]],
    _annotation(1, segmentation={"size": [48, 64], "counts": "0161o0"}),  # a compressed RLE
    _annotation(0, area=200.5, bbox=[4.5, 5.25, 20.0, 10]),  # float coordinates and areas
    lambda d: (d["images"][0].update(id=7.0), d["annotations"][0].update(id=1.0, image_id=7.0, category_id=1.0)),
], ids=["as-written", "ann-id-0", "ann-id-negative", "image-id-negative", "empty-category", "no-segmentations",
        "null-segmentations", "compressed-rle", "floats", "integral-float-ids"])  # fmt: skip
def test_legitimate_files_are_still_accepted_and_pycocotools_scores_them(tmp_path, change):
    path = write_coco(tmp_path)
    data = rewrite(path, change)
    assert check(tmp_path) == []
    pycocotools_scores(path, "bbox")
    if all(a.get("segmentation") is not None for a in data["annotations"]):
        pycocotools_scores(path, "segm")


def test_many_bad_entries_are_counted_in_one_line_per_kind(tmp_path):
    path = write_coco(tmp_path)
    rewrite(path, lambda d: [a.pop("area") for a in d["annotations"]] and d["annotations"].extend(
        {**d["annotations"][0], "id": 1} for _ in range(4)))  # fmt: skip
    found = check(tmp_path)
    assert len(found) == 2, found
    assert "6 of 6 annotations are unusable: annotation 1 has area None" in found[0]
    assert " and 3 more; fix or drop them" in found[0]
    assert "annotation ids are not unique: 1 (5 times)" in found[1]


def test_a_result_kept_by_an_older_check_is_checked_again(tmp_path):
    """A file the older check accepted (its result kept under paths.cache, without ``checks``) is parsed again: a
    kept acceptance must not outlive what this check refuses."""
    path = write_coco(tmp_path)
    rewrite(path, _annotation(0, area=...))
    assert "has area None" in check(tmp_path)[0]
    (entry,) = (tmp_path / "cache" / "coco_checks").iterdir()
    kept = json.loads(entry.read_text())
    assert kept["checks"] == coco.CHECKS
    entry.write_text(json.dumps({k: v for k, v in kept.items() if k != "checks"} | {"problems": []}))
    assert "has area None" in check(tmp_path)[0]


# ---- Which engine scores: decided by importing hotcoco ----------------------------------------------------------

BROKEN = "raise ImportError('libhotcoco.so: undefined symbol: PyFake_Symbol')\n"


def test_a_hidden_hotcoco_is_not_installed_and_a_broken_one_failed_to_import(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "hotcoco", None)
    assert coco_engine.hotcoco_module.__wrapped__() == (None, "hotcoco is not installed")
    (tmp_path / "hotcoco").mkdir()
    (tmp_path / "hotcoco" / "__init__.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "hotcoco")
    assert coco_engine.hotcoco_module.__wrapped__() == (
        None, "hotcoco failed to import: ImportError: libhotcoco.so: undefined symbol: PyFake_Symbol")


NOTES = """
import json, sys
from pathlib import Path
from xfer.benchmarks import coco, coco_eval as ce
root = Path(sys.argv[1])
print(json.dumps([coco.evaluation_notes(root, ["coco_2017_val"], "xfer", root / "cache"),
                  ce.hotcoco_takes(ce.CocoTruth(str(root / coco.SPLITS["coco_2017_val"][1])))]))
"""


@pytest.mark.launch  # a Python process of its own, whose hotcoco is broken
def test_the_launch_and_the_trial_agree_that_a_broken_hotcoco_failed_to_import(tmp_path):
    """An installed hotcoco whose import raises is found by ``find_spec``: the launch then said "scored by hotcoco"
    while the trial fell back to the NumPy engine saying "not installed". Both now say why, in the same words."""
    write_coco(tmp_path / "data")
    fake = tmp_path / "fake" / "hotcoco"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(BROKEN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(REPO)])}
    run = subprocess.run([sys.executable, "-c", NOTES, str(tmp_path / "data")], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    (note,), reason = json.loads(run.stdout.strip().splitlines()[-1])
    why = "hotcoco failed to import: ImportError: libhotcoco.so: undefined symbol: PyFake_Symbol"
    assert note == f"coco_2017_val: scored by xfer's NumPy engine, pycocotools' numbers ({why})"
    assert reason == why


def test_a_file_of_boxes_only_is_refused_for_a_recipe_that_trains_masks_and_kept_for_a_box_only_one(tmp_path):
    """No annotation has a segmentation: detectron2 makes no ``gt_masks`` of it (Mask R-CNN's mask loss has none to
    learn from) and pycocotools' mask AP fails on it after training. With ``MODEL.MASK_ON`` (``masks``) the check
    says so; a box-only recipe takes the file as it is, and pycocotools scores its boxes."""
    d2compat.ensure()
    from detectron2.data.datasets.coco import load_coco_json
    from detectron2.data.detection_utils import annotations_to_instances

    path = rewrite(write_coco(tmp_path), lambda d: [a.pop("segmentation") for a in d["annotations"]]) and \
        tmp_path / "coco" / "annotations" / "instances_val2017.json"  # fmt: skip
    record = load_coco_json(str(path), str(tmp_path / "coco" / "val2017"), None)[0]
    assert not annotations_to_instances(record["annotations"], (48, 64), mask_format="polygon").has("gt_masks")
    with pytest.raises(KeyError):
        pycocotools_scores(path, "segm")
    pycocotools_scores(path, "bbox")
    (line,) = coco.problems(tmp_path, ["coco_2017_val"], cache=tmp_path / "cache", masks=True)
    assert line.startswith("dataset coco_2017_val: instances_val2017.json has boxes only") and \
        "+d2.MODEL.MASK_ON=false" in line  # fmt: skip
    assert coco.problems(tmp_path, ["coco_2017_val"], cache=tmp_path / "cache", masks=False) == []
    assert coco.problems(tmp_path, ["coco_2017_val"], cache=tmp_path / "cache", masks=True) == [line]  # cached


def test_voc_refuses_a_recipe_that_trains_masks(tmp_path):
    from xfer.benchmarks import voc

    assert voc.problems(tmp_path, [], masks=True)[0].startswith("VOC has boxes only")
    assert voc.problems(tmp_path, [], masks=False) == []


def detectron2_training_set(path: Path, name: str) -> list:
    """What detectron2's trainer builds its data from (``get_detection_dataset_dicts``, empty annotations and crowd-only
    images filtered as DATALOADER.FILTER_EMPTY_ANNOTATIONS, the default, does)."""
    d2compat.ensure()
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.build import get_detection_dataset_dicts
    from detectron2.data.datasets import register_coco_instances

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, str(path), str(path.parents[1] / "train2017"))
    return get_detection_dataset_dicts([name], filter_empty=True)


@pytest.mark.parametrize("change,said", [
    (lambda d: d.update(images=[], annotations=[]), "instances_train2017.json lists no images"),
    (lambda d: d.update(annotations=[a for a in d["annotations"] if a["iscrowd"]]),
     "instances_train2017.json has no image with an annotation that is not a crowd region"),
])  # fmt: skip
def test_a_train_file_detectron2_would_train_nothing_from_is_refused(tmp_path, change, said):
    """detectron2 fails at the start of training ("Dataset ... is empty!", "No valid data found") where the check had
    passed the file."""
    path = write_coco(tmp_path, "train2017")
    rewrite(path, change)
    found = coco.problems(tmp_path, ["coco_2017_train"], cache=tmp_path / "cache")
    assert len(found) == 1 and said in found[0], found
    with pytest.raises(AssertionError, match="is empty|No valid data"):  # the oracle: detectron2's own training set
        detectron2_training_set(path, "xfer_test_train_empty")
    rewrite(path, lambda d: d.update(write_coco(tmp_path / "plain", "train2017") and json.loads(
        (tmp_path / "plain/coco/annotations/instances_train2017.json").read_text())))  # fmt: skip
    assert coco.problems(tmp_path, ["coco_2017_train"], cache=tmp_path / "cache") == []
    assert detectron2_training_set(path, "xfer_test_train_plain")


@pytest.mark.parametrize("field,value", [("bbox", [float("nan"), 5, 20, 10]), ("bbox", [4, 5, float("inf"), 10]),
                                         ("area", float("nan"))])  # fmt: skip
def test_a_box_or_area_that_is_no_finite_number_is_refused(tmp_path, field, value):
    """Python's JSON reads NaN and Infinity; a box at NaN trained and scored without an error, on no real object."""
    path = write_coco(tmp_path)
    rewrite(path, _annotation(0, **{field: value}))
    found = check(tmp_path)
    assert len(found) == 1 and "annotation 1 has" in found[0] and field in found[0], found
