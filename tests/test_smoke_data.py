"""The smoke's generated inputs: scenes whose boxes are the drawn pixels as detectron2 reads them, every class
present in every split, and the pretraining's ResNet under torchvision's own names."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import torch
import torchvision
import yaml
from PIL import Image, ImageDraw

from tests.conftest import REPO
from xfer import d2compat
from xfer.benchmarks.voc import VOC_CLASSES
from xfer.smoke import layouts, pretraining, scenes
from xfer.trial import convert

SMOKE = yaml.safe_load((REPO / "conf/benchmark/smoke.yaml").read_text())


@pytest.mark.parametrize("shape", scenes.SHAPES)
@pytest.mark.parametrize("box", [(3, 5, 26, 30), (10, 2, 33, 25), (0, 0, 24, 24), (40, 41, 79, 79)])
def test_each_shape_fills_its_box_to_every_side(shape, box):
    img = Image.new("L", (80, 80), 0)
    scenes.draw_shape(ImageDraw.Draw(img), shape, box, 255)
    ys, xs = np.nonzero(np.asarray(img))
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == box  # inclusive pixel corners, worked out by hand


def test_detectron2_reads_each_box_as_the_pixels_drawn(tmp_path):
    """VOC boxes are 1-based and inclusive; detectron2's loader makes them [x0, y0, x1 + 1, y1 + 1): exactly the
    pixels from x0 through x1 that draw_shape fills (above). Class ids are VOC's order."""
    d2compat.ensure()
    from detectron2.data.datasets.pascal_voc import load_voc_instances

    objects = [(0, False, (3, 5, 26, 30)), (19, True, (40, 41, 49, 50)), (7, False, (0, 0, 95, 63))]
    voc = tmp_path / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets/Main").mkdir(parents=True)
    (voc / "Annotations/a.xml").write_bytes(scenes.annotation("a", 96, 64, objects))
    (voc / "Annotations/b.xml").write_bytes(scenes.annotation("b", 40, 30, [(4, False, (1, 2, 38, 27))]))
    (voc / "ImageSets/Main/test.txt").write_text("a\nb\n")  # two: v0.6's loader cannot read a one-line list
    record, other = load_voc_instances(str(voc), "test", VOC_CLASSES)
    assert [(a["category_id"], a["bbox"]) for a in other["annotations"]] == [(4, [1, 2, 39, 28])]
    assert (record["width"], record["height"]) == (96, 64)
    got = [(a["category_id"], a["bbox"]) for a in record["annotations"]]
    assert got == [(0, [3, 5, 27, 31]), (19, [40, 41, 50, 51]), (7, [0, 0, 96, 64])]
    xml = ET.parse(voc / "Annotations/a.xml").getroot()
    assert [o.findtext("difficult") for o in xml.iter("object")] == ["0", "1", "0"]
    assert [o.findtext("name") for o in xml.iter("object")] == ["aeroplane", "tvmonitor", "cat"]


def test_the_smoke_splits_hold_every_class_plain_and_a_few_difficult(tmp_path):
    gen = SMOKE["smoke"]
    root = scenes.ensure_dataset(tmp_path / "data", gen["images"], tuple(gen["image_size"]))
    lo, hi = gen["image_size"]
    for name, count in gen["images"].items():
        year, split = name.split("_")[1:]
        voc = root / f"VOC{year}"
        ids = (voc / f"ImageSets/Main/{split}.txt").read_text().split()
        assert len(ids) == count
        plain, difficult, per_image = Counter(), 0, []
        for i in ids:
            xml = ET.parse(voc / f"Annotations/{i}.xml").getroot()
            w, h = int(xml.findtext("size/width")), int(xml.findtext("size/height"))
            assert lo <= w <= hi and lo <= h <= hi and Image.open(voc / f"JPEGImages/{i}.jpg").size == (w, h)
            objs = list(xml.iter("object"))
            per_image.append(len(objs))
            for o in objs:
                x0, y0, x1, y1 = (int(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
                assert 1 <= x0 < x1 <= w and 1 <= y0 < y1 <= h
                if o.findtext("difficult") == "1":
                    difficult += 1
                    assert x1 - x0 < scenes.MIN_SIDE  # the tiny ones
                else:
                    plain[o.findtext("name")] += 1
                    assert x1 - x0 >= scenes.MIN_SIDE
        assert set(plain) == set(VOC_CLASSES), (name, sorted(set(VOC_CLASSES) - set(plain)))  # no AP is undefined
        assert min(per_image) >= 1 and max(per_image) <= 4 and sum(per_image) / len(per_image) > 1.5
        assert 0 < difficult <= 0.1 * sum(per_image), (name, difficult)  # a few, as in VOC


def test_same_seed_same_scenes_and_another_spec_remakes_them(tmp_path):
    images, size = {"voc_2007_test": 6}, (96, 128)
    a = scenes.ensure_dataset(tmp_path / "a", images, size)
    b = scenes.ensure_dataset(tmp_path / "b", images, size)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    before = (a / "VOC2007/Annotations/test_000000.xml").read_bytes()
    scenes.ensure_dataset(tmp_path / "a", images, size, seed=1)  # another spec: made again
    assert (a / "VOC2007/Annotations/test_000000.xml").read_bytes() != before


def test_the_classes_differ_in_colour_or_shape():
    """Two classes share a colour only with another shape: colours stay apart beyond their jitter (±20 a channel)."""
    colours = [np.array(c) for c in scenes.COLOURS]
    assert min(np.linalg.norm(a - b) for a, b in itertools.combinations(colours, 2)) > 2 * 20 * 3**0.5
    assert len(scenes.COLOURS) * len(scenes.SHAPES) == len(VOC_CLASSES)


def test_the_deck_deals_every_class_once_per_twenty():
    deck = scenes.Deck(random.Random(0))
    for _ in range(3):
        assert sorted(deck.deal() for _ in VOC_CLASSES) == list(range(len(VOC_CLASSES)))


def test_the_pretrained_resnet_is_the_detectors_under_torchvisions_names():
    """``pretraining.trunk`` of detectron2's own C4 detector (the smoke's narrow model) has exactly torchvision's
    ResNet-50 names (its own ``resnet50()``, fc aside), each holding the detector's tensor that the seed's
    renaming (``convert.rename``, pinned in test_convert) sends it back to; the extra res5 norm is left out."""
    d2compat.ensure()
    from detectron2.config import CfgNode, get_cfg
    from detectron2.modeling import build_model

    from xfer.trial import roi_heads  # noqa: F401  registers Res5ROIHeadsExtraNorm

    cfg = get_cfg()
    cfg.merge_from_other_cfg(CfgNode(SMOKE["d2"]))
    cfg.MODEL.DEVICE = "cpu"
    state = build_model(cfg).state_dict()
    tv = pretraining.trunk(state)
    names = {k for k in torchvision.models.resnet50().state_dict() if not k.startswith("fc.")}
    assert set(tv) == names
    assert any(k.startswith("roi_heads.res5.norm.") for k in state)  # present in the detector, not in the ResNet
    for name, tensor in tv.items():
        d2 = convert.rename(name)
        source = state[("roi_heads." if d2.startswith("res5.") else "backbone.") + d2]
        assert tensor is source or torch.equal(tensor, source), name
    assert {k: tuple(v.shape) for k, v in tv.items()} == {
        k: tuple(v.shape) for k, v in layouts.torchvision_resnet(50, 16, 32, 8).items() if not k.startswith("fc.")}


def test_a_users_own_file_at_the_weights_path_is_never_overwritten(tmp_path):
    from xfer import smoke

    mine = tmp_path / "densecl_r50.pth"
    mine.write_bytes(b"my own checkpoint")
    made = []
    smoke.ensure_weights(mine, "torchvision", {"random": 1}, lambda: made.append(1) or {})
    assert mine.read_bytes() == b"my own checkpoint" and not made
    ours = tmp_path / "ours.pth"
    smoke.ensure_weights(ours, "torchvision", {"random": 1}, lambda: {"a": torch.zeros(1)})
    smoke.ensure_weights(ours, "torchvision", {"random": 2}, lambda: {"a": torch.ones(1)})  # another spec: remade
    assert torch.load(ours)["a"].item() == 1.0
    assert Path(str(ours) + ".spec").exists()


@pytest.mark.parametrize("shape", scenes.SHAPES)
def test_coco_polygons_cover_the_pixels_each_shape_fills(shape):
    """pycocotools' rasterization of the annotated polygon and PIL's fill of the shape are the same region (IoU
    >= 0.9 for the 24-gon disc, more for the straight-edged shapes): masks are trained on what the image shows."""
    from pycocotools import mask as mask_utils

    from xfer.smoke import coco_scenes

    for box in [(3, 5, 36, 40), (10, 2, 43, 29), (40, 41, 79, 79)]:
        img = Image.new("L", (80, 80), 0)
        scenes.draw_shape(ImageDraw.Draw(img), shape, box, 255)
        drawn = np.asarray(img) > 0
        rle = mask_utils.frPyObjects([coco_scenes.polygon(shape, box)], 80, 80)
        annotated = mask_utils.decode(mask_utils.merge(rle)).astype(bool)
        iou = (drawn & annotated).sum() / (drawn | annotated).sum()
        assert iou >= (0.9 if shape == "disc" else 0.95), (shape, box, iou)


def test_the_coco_smoke_dataset_loads_in_detectron2_with_crowd_regions(tmp_path):
    from xfer.benchmarks import coco
    from xfer.smoke import coco_scenes

    images = {"coco_2017_train": 40, "coco_2017_val": 20}
    root = coco_scenes.ensure_dataset(tmp_path / "data", images, (96, 128))
    assert coco.problems(root, list(images), num_classes=20) == []
    coco.register(root, list(images))
    from detectron2.data import DatasetCatalog, MetadataCatalog

    records = DatasetCatalog.get("coco_2017_val")
    anns = [a for r in records for a in r["annotations"]]
    assert len(records) == 20 and len(anns) > 30
    assert any(a["iscrowd"] for a in anns) and all(a["segmentation"] for a in anns)
    # ids 1, 3, 5, ... go round the colours first: red, green, blue, yellow, magenta disc (scene classes 0, 4, 8, 12,
    # 16, named as VOC's classes 0, 4, 8, ...), then the squares (1, 5, ...): ids one apart differ in colour
    names = MetadataCatalog.get("coco_2017_val").thing_classes
    assert names[:7] == ["aeroplane", "bottle", "chair", "horse", "sheep", "bicycle", "bus"]
    assert sorted(names) == sorted(VOC_CLASSES)
    assert sorted({a["category_id"] for a in anns}) == list(range(20))  # 1, 3, ..., 39 mapped to 0..19
    # in the pixels: a plain object of the j-th category (contiguous id j) is painted in colour j % 5
    from pycocotools import mask as mask_utils

    for r in records:
        pixels = np.asarray(Image.open(r["file_name"]).convert("RGB")).astype(float)
        for a in r["annotations"]:
            if not a["iscrowd"]:
                rles = mask_utils.frPyObjects(a["segmentation"], r["height"], r["width"])
                inside = mask_utils.decode(mask_utils.merge(rles)).astype(bool)
                mean = pixels[inside].mean(axis=0)
                nearest = min(range(5), key=lambda k: np.abs(mean - np.array(scenes.COLOURS[k])).sum())
                assert nearest == a["category_id"] % 5, (r["file_name"], a, mean)


def test_the_voc_and_coco_smokes_fine_tune_one_smoke_pretraining():
    """The smoke pretraining is the smoke's "ImageNet": one detector (the VOC smoke's C4) trained once per backbone,
    whichever smoke fine-tunes it. The COCO smokes' own models (Mask R-CNN C4, FPN) do not change what it trains,
    so all three share one cached file (made once in the suite's COCO tier and by make smoke-coco)."""
    from hydra import compose, initialize_config_dir

    from xfer import smoke

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        specs = {b: smoke._pretraining_spec(compose("config", overrides=[f"benchmark={b}", "pretrain=densecl"]))
                 for b in ("smoke", "coco_smoke_c4", "coco_smoke_fpn")}  # fmt: skip
    assert specs["coco_smoke_c4"] == specs["smoke"] == specs["coco_smoke_fpn"]
    model = specs["smoke"]["d2"]["MODEL"]
    assert model["MASK_ON"] is False and model["ROI_HEADS"]["NAME"] == "Res5ROIHeadsExtraNorm"  # the VOC smoke's C4
