"""The COCO format's checks and registration, on tiny instances files written by hand; detectron2's own COCO
loader and builtin split table are the oracles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from xfer import d2compat
from xfer.benchmarks import coco

CATEGORIES = [{"id": 1, "name": "square"}, {"id": 3, "name": "disc"}]  # non-contiguous ids, as COCO's


def write_coco(root: Path, split: str = "val2017", categories=CATEGORIES, **changes) -> Path:
    """coco/<split>/ with two images and coco/annotations/instances_<split>.json: a polygon, a crowd RLE region."""
    images = root / "coco" / split
    images.mkdir(parents=True, exist_ok=True)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (64, 48)).save(images / name)
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 64, "height": 48},
                   {"id": 9, "file_name": "b.jpg", "width": 64, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [4, 5, 20, 10], "area": 200, "iscrowd": 0,
             "segmentation": [[4, 5, 24, 5, 24, 15, 4, 15]]},
            {"id": 2, "image_id": 9, "category_id": 3, "bbox": [0, 0, 2, 1], "area": 2, "iscrowd": 1,
             "segmentation": {"size": [48, 64], "counts": [0, 1, 47, 1, 3023]}},
        ],
        "categories": categories,
    } | changes  # fmt: skip
    path = root / "coco" / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_the_splits_are_detectron2s_own():
    d2compat.ensure()
    from detectron2.data.datasets.builtin import _PREDEFINED_SPLITS_COCO

    for name in ("coco_2017_train", "coco_2017_val"):
        assert coco.SPLITS[name] == _PREDEFINED_SPLITS_COCO["coco"][name]
    assert coco.SPLITS["coco_2017_train_0.1"] == ("coco/train2017", "coco/annotations/instances_train2017_0.1.json")


def test_a_good_dataset_has_no_problems_and_detectron2_loads_it(tmp_path):
    write_coco(tmp_path)
    assert coco.problems(tmp_path, ["coco_2017_val"], num_classes=2, cache=tmp_path / "cache") == []
    coco.register(tmp_path, ["coco_2017_val"])
    from detectron2.data import DatasetCatalog, MetadataCatalog

    records = DatasetCatalog.get("coco_2017_val")
    assert [len(r["annotations"]) for r in records] == [1, 1]
    assert records[1]["annotations"][0]["iscrowd"] == 1
    meta = MetadataCatalog.get("coco_2017_val")
    assert meta.thing_classes == ["square", "disc"] and meta.thing_dataset_id_to_contiguous_id == {1: 0, 3: 1}


def test_missing_files_are_named_with_the_fix(tmp_path):
    (msg,) = coco.problems(tmp_path, ["coco_2017_train"])
    assert msg.startswith("dataset coco_2017_train: missing ") and "instances_train2017.json" in msg
    assert "DETECTRON2_DATASETS" in msg and str(tmp_path.resolve()) in msg


def test_an_unknown_name_is_refused(tmp_path):
    (msg,) = coco.problems(tmp_path, ["coco_2017_tset"])
    assert "coco_2017_tset: not a COCO dataset xfer knows; use one of coco_2017_train, coco_2017_val" in msg


@pytest.mark.parametrize("break_it, expected", [
    (lambda p: p.write_text('{"images": ['), "instances_val2017.json: not readable JSON (JSONDecodeError"),
    (lambda p: p.write_text('{"images": [], "categories": []}'), "not a COCO instances file (it needs lists"),
    (lambda p: p.write_text(p.read_text().replace('"category_id": 3', '"category_id": 4')),
     "1 of 2 annotations are unusable: annotation 2 names category_id 4, which is not in categories"),
    (lambda p: p.write_text(p.read_text().replace('"image_id": 7', '"image_id": 8')),
     "annotation 1 names image_id 8, which is not in images"),
    (lambda p: p.write_text(p.read_text().replace('[4, 5, 20, 10]', '[4, 5, -20, 10]')),
     "annotation 1 has bbox [4, 5, -20, 10], not [x, y, width, height]"),
    (lambda p: p.write_text(p.read_text().replace('[[4, 5, 24, 5, 24, 15, 4, 15]]', '[[4, 5, 24]]')),
     "annotation 1 has a polygon that is not an even list of at least 6 coordinates"),
    (lambda p: (p.parents[1] / "val2017" / "b.jpg").unlink(), "1 of 2 images of instances_val2017.json are missing"),
])  # fmt: skip
def test_each_malformed_input_gets_one_clear_message(tmp_path, break_it, expected):
    break_it(write_coco(tmp_path))
    found = coco.problems(tmp_path, ["coco_2017_val"], cache=tmp_path / "cache")
    assert len(found) == 1 and found[0].startswith("dataset coco_2017_val: ") and expected in found[0], found


def test_categories_must_agree_between_train_and_test_and_with_the_recipe(tmp_path):
    write_coco(tmp_path, "train2017", categories=[*CATEGORIES, {"id": 5, "name": "cross"}])
    write_coco(tmp_path, "val2017")
    (msg,) = coco.problems(tmp_path, ["coco_2017_train", "coco_2017_val"])
    assert "their categories differ (coco_2017_train has 3, coco_2017_val has 2" in msg
    (msg,) = coco.problems(tmp_path, ["coco_2017_val"], num_classes=80)
    assert "have 2 categories, the recipe's MODEL.ROI_HEADS.NUM_CLASSES is 80" in msg
    assert "benchmark.d2.MODEL.ROI_HEADS.NUM_CLASSES=2" in msg


def test_the_json_is_read_once_but_images_are_looked_for_every_time(tmp_path):
    path = write_coco(tmp_path)
    cache = tmp_path / "cache"
    assert coco.problems(tmp_path, ["coco_2017_val"], cache=cache) == []
    (entry,) = (cache / "coco_checks").iterdir()
    kept = json.loads(entry.read_text())
    assert kept["files"] == ["a.jpg", "b.jpg"] and kept["categories"] == [[1, "square"], [3, "disc"]]
    (path.parents[1] / "val2017" / "a.jpg").unlink()
    (msg,) = coco.problems(tmp_path, ["coco_2017_val"], cache=cache)
    assert "missing from" in msg and "a.jpg" in msg
    path.write_text("not json")  # a new file (size and mtime change): read again
    assert "not readable JSON" in coco.problems(tmp_path, ["coco_2017_val"], cache=cache)[0]


def test_metrics_take_detectron2s_names_per_task():
    results = {t: {s: float(i) for i, s in enumerate(coco.STATS)} | {"AP-disc": 1.0} for t in ("bbox", "segm")}
    got = coco.metrics(results)
    assert got["box_AP"] == 0.0 and got["mask_APl"] == 5.0 and len(got) == 12 and "AP-disc" not in str(got)
    assert coco.METRIC_NAMES == ("box_AP", "box_AP50", "box_AP75", "mask_AP", "mask_AP50", "mask_AP75")
