"""The low-data COCO split (``coco_2017_train_0.1``): ``python -m xfer coco-subset`` writes it from train2017's
instances file, and detectron2's own loader reads it. Counts are worked out by hand from the file written here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import REPO
from xfer.benchmarks import coco, coco_subset

CATEGORIES = [{"id": 1, "name": "square"}, {"id": 3, "name": "disc"}, {"id": 8, "name": "cross"}]


def write_train(root: Path, images: int = 40) -> dict:
    """train2017 with ``images`` images; image i (ids 100, 103, ...: not contiguous, listed in reverse) holds i % 3
    annotations, the first of every fifth image a crowd region; category 8 has no annotation at all."""
    folder = root / "coco" / "train2017"
    folder.mkdir(parents=True)
    data = {"info": {"year": 2017}, "licenses": [], "categories": CATEGORIES, "images": [], "annotations": []}
    for i in reversed(range(images)):
        name = f"{i:04d}.jpg"
        Image.new("RGB", (32, 24)).save(folder / name)
        data["images"].append({"id": 100 + 3 * i, "file_name": name, "width": 32, "height": 24})
        for k in range(i % 3):
            data["annotations"].append({"id": 10 * i + k + 1, "image_id": 100 + 3 * i, "category_id": (1, 3)[k],
                                        "bbox": [1, 1, 8, 6], "area": 48, "iscrowd": int(k == 0 and i % 5 == 0),
                                        "segmentation": [[1, 1, 9, 1, 9, 7, 1, 7]]})  # fmt: skip
    path = root / coco_subset.SOURCE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return data


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xfer", "coco-subset", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_the_subset_keeps_a_tenth_of_the_images_with_all_their_annotations(tmp_path):
    full = write_train(tmp_path)
    run = cli("--datasets", str(tmp_path))
    assert run.returncode == 0, run.stderr
    written = tmp_path / "coco" / "annotations" / "instances_train2017_0.1.json"
    assert str(written) in run.stdout and (tmp_path / coco.SPLITS["coco_2017_train_0.1"][1]) == written
    sub = json.loads(written.read_text())
    ids = {i["id"] for i in sub["images"]}
    assert len(ids) == 4 and ids <= {i["id"] for i in full["images"]}  # 10% of 40
    per_image = {i: sum(a["image_id"] == i for a in full["annotations"]) for i in ids}
    assert sorted(a["id"] for a in sub["annotations"]) == sorted(
        a["id"] for a in full["annotations"] if a["image_id"] in ids)
    assert len(sub["annotations"]) == sum(per_image.values())
    assert sub["categories"] == CATEGORIES  # all of them, even one without annotations: NUM_CLASSES stays train2017's
    assert sub["info"]["xfer_subset"] == {"of": "instances_train2017.json", "fraction": 0.1, "seed": 0, "images": 4,
                                          "draw": coco_subset.DRAW, "ids_sha256": coco_subset.ids_sha256(ids)}


def test_the_draw_depends_on_the_seed_only_not_on_the_files_order():
    data = {"images": [{"id": i} for i in range(1000)], "annotations": [], "categories": []}
    shuffled = {**data, "images": data["images"][::-1]}

    def drawn(d, seed):
        return {i["id"] for i in coco_subset.subset(d, 0.1, seed)["images"]}

    assert drawn(data, 0) == drawn(shuffled, 0) and len(drawn(data, 0)) == 100
    assert drawn(data, 0) != drawn(data, 1)


def test_a_small_draw_is_the_one_worked_out_by_hand():
    """Ten images (ids 1..10, listed in any order), 30%: the three whose ``sha256sum`` of "<seed>:<id>" is smallest.
    By hand with coreutils (``printf 0:7 | sha256sum`` ...): seed 0 -> 2bef8ffb.. (7), 48f03bc9.. (4), 502172c3.. (9);
    seed 1 -> 3d5f0fd8.. (7), 492ab00b.. (4), 546201ca.. (8). The digest: ``printf '4\\n7\\n9' | sha256sum``."""
    data = {"images": [{"id": i} for i in (5, 3, 10, 1, 8, 2, 9, 4, 7, 6)], "annotations": [], "categories": []}
    sub = coco_subset.subset(data, 0.3, 0)
    assert [i["id"] for i in sub["images"]] == [9, 4, 7]  # in the file's order
    assert {i["id"] for i in coco_subset.subset(data, 0.3, 1)["images"]} == {4, 7, 8}
    assert sub["info"]["xfer_subset"]["ids_sha256"] == "8d288b8164385bf3ba6231e75bb2255faaa324929faf7f68b412101b286f39ae"


def test_detectron2_loads_the_split_and_the_checks_pass(tmp_path):
    write_train(tmp_path)
    (msg,) = coco.problems(tmp_path, ["coco_2017_train_0.1"])
    assert "instances_train2017_0.1.json" in msg and "python -m xfer coco-subset" in msg
    assert cli("--datasets", str(tmp_path), "--seed", "3").returncode == 0
    assert coco.problems(tmp_path, ["coco_2017_train_0.1"], num_classes=3) == []
    coco.register(tmp_path, ["coco_2017_train_0.1"])
    from detectron2.data import DatasetCatalog

    records = DatasetCatalog.get("coco_2017_train_0.1")
    sub = json.loads((tmp_path / coco.SPLITS["coco_2017_train_0.1"][1]).read_text())
    assert sorted(r["image_id"] for r in records) == sorted(i["id"] for i in sub["images"])
    assert sum(len(r["annotations"]) for r in records) == len(sub["annotations"])


@pytest.mark.launch
def test_an_existing_file_is_kept_and_a_missing_or_bad_source_named(tmp_path):
    run = cli("--datasets", str(tmp_path))
    assert run.returncode == 2 and "instances_train2017.json is missing" in run.stderr
    (tmp_path / coco_subset.SOURCE).parent.mkdir(parents=True)
    (tmp_path / coco_subset.SOURCE).write_text('{"images": []}')
    run = cli("--datasets", str(tmp_path))
    assert run.returncode == 2 and "not a COCO instances file" in run.stderr and "Traceback" not in run.stderr
    (tmp_path / coco_subset.SOURCE).write_text('{"images": [')
    run = cli("--datasets", str(tmp_path))
    assert run.returncode == 2 and "not readable JSON" in run.stderr and "Traceback" not in run.stderr
    run = cli("--datasets", str(tmp_path), "--fraction", "1.5")
    assert run.returncode == 2 and "fraction 1.5: between 0 and 1" in run.stderr
    shutil.rmtree(tmp_path / "coco")
    write_train(tmp_path)
    assert cli("--datasets", str(tmp_path)).returncode == 0
    target = tmp_path / coco.SPLITS["coco_2017_train_0.1"][1]
    before = target.read_bytes()
    run = cli("--datasets", str(tmp_path), "--seed", "5")
    assert run.returncode == 2 and "exists; pass --force" in run.stderr and target.read_bytes() == before
    assert cli("--datasets", str(tmp_path), "--seed", "5", "--force").returncode == 0
    assert target.read_bytes() != before
