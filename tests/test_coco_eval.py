"""xfer.benchmarks.coco_eval against pycocotools' COCOeval (the oracle) and detectron2 v0.6's COCOEvaluator."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import sys
from importlib import metadata

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests import coco_random
from xfer import d2compat
from xfer.benchmarks import coco_eval as ce
from xfer.trial.dist import free_port

d2compat.ensure()
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.datasets import register_coco_instances  # noqa: E402
from detectron2.evaluation import COCOEvaluator as D2COCOEvaluator  # noqa: E402
from detectron2.evaluation.coco_evaluation import COCOevalMaxDets  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402

SEEDS = range(60)


def oracle(gt: dict, dets: list[dict], iou_type: str, max_dets=(1, 10, 100), cls=COCOeval) -> COCOeval:
    """pycocotools, run the way detectron2 runs it (the box dropped from mask results), on copies."""
    gt, dets = copy.deepcopy(gt), copy.deepcopy(dets)
    if iou_type == "segm":
        for d in dets:
            d.pop("bbox", None)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = cls(coco, coco.loadRes(dets), iou_type)
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def assert_same(gt: dict, dets: list[dict], iou_type: str, engine: str, max_dets=(1, 10, 100), cls=COCOeval):
    """The 12 numbers to 1e-9, and (stronger) the precision and recall arrays they average."""
    return same_as_oracle(gt, dets, iou_type, (engine,), max_dets, cls)[engine]


def same_as_oracle(gt: dict, dets: list[dict], iou_type: str, engines: tuple[str, ...], max_dets=(1, 10, 100),
                   cls=COCOeval) -> dict[str, ce.CocoEval]:  # fmt: skip
    """:func:`assert_same` for each of ``engines``, against one run of the oracle; each engine's result."""
    ref = oracle(gt, dets, iou_type, max_dets, cls)
    out = {}
    for engine in engines:
        got = out[engine] = ce.coco_eval(gt, dets, iou_type, max_dets, engine)
        assert np.max(np.abs(got.stats - ref.stats)) <= 1e-9, (f"{engine}\nours   {got.stats.tolist()}\n"
                                                               f"oracle {ref.stats.tolist()}")  # fmt: skip
        assert np.max(np.abs(got.precision - ref.eval["precision"])) <= 1e-9, engine
        assert np.max(np.abs(got.recall - ref.eval["recall"])) <= 1e-9, engine
    out["oracle"] = ref
    return out


@pytest.mark.launch
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_identical_to_pycocotools_on_random_datasets(iou_type):
    """All 12 numbers on 60 random datasets per IoU type, both engines (edge cases: tests/coco_random.py)."""
    for seed in SEEDS:
        same_as_oracle(*coco_random.dataset(seed), iou_type, ("hotcoco", "numpy"))


def test_the_random_datasets_hold_the_edge_cases():
    """What the identity test is meant to cover is really in its data, over the seeds it uses."""
    seen = {k: 0 for k in ("crowd_rle", "crowd_poly", "multipart", "img_no_gt", "img_no_det", "over_100",
                           "tied", "gt_on_boundary", "det_on_boundary", "cat_no_det", "cat_no_gt", "unknown_cat",
                           "iou_tie_trap")}  # fmt: skip
    for seed in SEEDS[:10]:
        gt, dets = coco_random.dataset(seed)
        anns, cats = gt["annotations"], {c["id"] for c in gt["categories"]}
        crowd = [a for a in anns if a["iscrowd"]]
        seen["crowd_rle"] += sum(isinstance(a["segmentation"], dict) for a in crowd)
        seen["crowd_poly"] += sum(isinstance(a["segmentation"], list) for a in crowd)
        seen["multipart"] += sum(isinstance(a["segmentation"], list) and len(a["segmentation"]) > 1 for a in anns)
        imgs = {im["id"] for im in gt["images"]}
        seen["img_no_gt"] += len(imgs - {a["image_id"] for a in anns})
        seen["img_no_det"] += len(imgs - {d["image_id"] for d in dets})
        groups: dict = {}
        for d in dets:
            groups[d["image_id"], d["category_id"]] = groups.get((d["image_id"], d["category_id"]), 0) + 1
        seen["over_100"] += max(groups.values()) > 100
        seen["tied"] += len(dets) - len({d["score"] for d in dets})
        seen["gt_on_boundary"] += sum(a["area"] in coco_random.BOUNDARIES for a in anns)
        seen["det_on_boundary"] += sum(d["bbox"][2] * d["bbox"][3] in coco_random.BOUNDARIES for d in dets)
        seen["cat_no_det"] += len(cats - {d["category_id"] for d in dets})
        seen["cat_no_gt"] += len(cats - {a["category_id"] for a in anns})
        seen["unknown_cat"] += sum(d["category_id"] not in cats for d in dets)
        seen["iou_tie_trap"] += sum(d["score"] == 0.97 for d in dets)
        for iou_type in ("bbox", "segm"):
            stats = oracle(gt, dets, iou_type).stats
            assert (stats > 0).sum() >= 6, stats  # the data makes real matches, not only -1 and 0
    assert all(seen.values()), seen


@pytest.mark.parametrize("quirk", ["gt id 0", "negative ids", "iscrowd True", "negative width", "all tied",
                                   "unlisted image"])  # fmt: skip
def test_pycocotools_quirks_are_kept(quirk):
    """Inputs where a reimplementation would naturally differ: a ground truth of id 0 (pycocotools then
    counts its match as none; hotcoco does not, so "auto" takes hotcoco but for its category), negative annotation, image
    and category ids (detectron2 and pycocotools take them; hotcoco raises, so "auto" takes the numpy engine),
    booleans for iscrowd, boxes of negative width, one score for all, an annotation on an image the dataset does
    not list."""
    for seed in range(6):
        gt, dets = coco_random.dataset(seed)
        if quirk == "gt id 0":
            for i, a in enumerate(gt["annotations"]):
                a["id"] = i
        elif quirk == "negative ids":
            for a in gt["annotations"]:
                a["id"], a["image_id"], a["category_id"] = -a["id"], -a["image_id"], -a["category_id"]
            for item in gt["images"] + gt["categories"]:
                item["id"] = -item["id"]
            for d in dets:
                d["image_id"], d["category_id"] = -d["image_id"], -d["category_id"]
        elif quirk == "iscrowd True":
            for a in gt["annotations"]:
                a["iscrowd"] = bool(a["iscrowd"])
        elif quirk == "negative width":
            for d in dets[::5]:
                d["bbox"][2] = -d["bbox"][2]
        elif quirk == "all tied":
            for d in dets:
                d["score"] = 0.5
        else:
            gt["annotations"].append(dict(gt["annotations"][0], id=10**6, image_id=10**6))
        for iou_type in ("bbox", "segm"):
            got = same_as_oracle(gt, dets, iou_type, ("auto", "numpy"))  # engines "auto" and "numpy"
            assert got["auto"].engine == ("numpy" if quirk == "negative ids" else "hotcoco")
            assert got["numpy"].engine == "numpy"


def test_an_annotation_id_0_is_scored_as_pycocotools_scores_it_where_hotcoco_alone_would_not():
    """pycocotools keeps a match as the ground truth's id, so a detection matched to id 0 counts as a false
    positive; hotcoco counts it as a match. The hotcoco engine therefore scores the category holding id 0 on
    the NumPy engine: its arrays are pycocotools' everywhere, while hotcoco's own differ in that category's
    slice only (the quirk is exercised, and it stays in one category)."""
    pytest.importorskip("hotcoco")
    bitten = 0
    for seed in range(8):
        gt, dets = coco_random.dataset(seed)
        for i, a in enumerate(gt["annotations"]):
            a["id"] = i  # the first annotation has id 0
        k = ce.zero_id_categories(ce.CocoTruth(gt))
        assert k == sorted({int(np.searchsorted(sorted({c["id"] for c in gt["categories"]}),
                                                gt["annotations"][0]["category_id"]))})  # fmt: skip
        for iou_type in ("bbox", "segm"):
            both = same_as_oracle(gt, dets, iou_type, ("hotcoco",))
            ref, got = both["oracle"], both["hotcoco"]
            assert got.engine == "hotcoco"
            truth = ce.CocoTruth(gt)
            truth.ids[truth.ids == 0] = -1  # no id 0 left: hotcoco's arrays, unfixed
            raw, _ = ce._hotcoco(truth, dets, iou_type, (1, 10, 100))
            others = np.delete(np.arange(raw.shape[2]), k)
            assert np.array_equal(raw[:, :, others], ref.eval["precision"][:, :, others])
            bitten += not np.array_equal(raw[:, :, k], ref.eval["precision"][:, :, k])
    assert bitten >= 4, bitten  # hotcoco alone gives other numbers on most of these


@pytest.mark.parametrize("max_dets", [(1, 10, 100), (1, 10, 300), (1, 5, 20), (100, 1, 10)])
def test_max_dets_as_detectron2_passes_them(max_dets):
    """maxDets [1, 10, 100] is plain COCOeval; another third value is detectron2's COCOevalMaxDets (AP at
    that value); COCOeval sorts them. Both engines."""
    cls = COCOeval if sorted(max_dets)[2] == 100 else COCOevalMaxDets
    for seed in range(4):
        for iou_type in ("bbox", "segm"):
            same_as_oracle(*coco_random.dataset(seed), iou_type, ("hotcoco", "numpy"), max_dets=max_dets, cls=cls)


def test_evaluate_reports_percent_and_nan_like_detectron2():
    gt, dets = coco_random.dataset(3)
    ref = oracle(gt, dets, "bbox").stats
    got = ce.evaluate(gt, dets, "bbox")
    assert list(got) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    for v, r in zip(got.values(), ref, strict=True):
        assert math.isnan(v) if r == -1 else v == pytest.approx(r * 100, abs=1e-9)
    no_small = {**gt, "annotations": [a for a in gt["annotations"] if a["area"] >= 32**2]}
    assert math.isnan(ce.evaluate(no_small, dets, "bbox")["APs"])  # -1 from pycocotools
    assert all(math.isnan(v) for v in ce.evaluate(gt, [], "segm").values())
    assert list(ce.evaluate(gt, dets, "segm", max_dets=(1, 10, 300)))[6:9] == ["AR1", "AR10", "AR300"]


@pytest.mark.parametrize("engine", ["hotcoco", "numpy"])
def test_inputs_are_not_modified_and_a_json_path_works(tmp_path, engine):
    gt, dets = coco_random.dataset(5)
    before = copy.deepcopy((gt, dets))
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    truth = ce.CocoTruth(gt)
    a = ce.coco_eval(gt, dets, "segm", engine=engine).stats
    b = ce.coco_eval(str(path), dets, "segm", engine=engine).stats
    c = [ce.coco_eval(truth, dets, t, engine=engine).stats for t in ("segm", "bbox", "segm")]  # cached forms
    assert np.array_equal(a, b) and np.array_equal(a, c[0]) and np.array_equal(a, c[2]) and (gt, dets) == before
    with pytest.raises(ValueError, match="not in it"):
        ce.coco_eval(gt, [dict(dets[0], image_id=10**7)], "bbox", engine=engine)
    only_unknown = [dict(d, category_id=10**6) for d in dets]  # all dropped: AP 0 where there is ground truth
    assert_same(gt, only_unknown, "bbox", engine)


# ---- the DatasetEvaluator ----------------------------------------------------------------------------


def register(tmp_path, gt: dict) -> str:
    """A COCO json dataset registered the way detectron2's builtin ones are; metadata filled as training
    does (DatasetCatalog.get sets thing_classes and the id mapping)."""
    name = f"xfer_coco_eval_{tmp_path.name}_{len(DatasetCatalog.list())}"
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(gt))
    register_coco_instances(name, {}, str(path), str(tmp_path))
    with contextlib.redirect_stdout(io.StringIO()):
        DatasetCatalog.get(name)
    return name


def model_outputs(gt: dict, dets: list[dict], name: str) -> tuple[list[dict], list[dict]]:
    """detectron2 model outputs (Instances with XYXY boxes, contiguous classes, bitmasks) per image."""
    to_contiguous = MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id
    inputs, outputs = [], []
    for img in gt["images"]:
        mine = [d for d in dets if d["image_id"] == img["id"] and d["category_id"] in to_contiguous]
        inst = Instances((img["height"], img["width"]))
        boxes = torch.tensor([d["bbox"] for d in mine], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        inst.pred_boxes = Boxes(boxes)
        inst.scores = torch.tensor([d["score"] for d in mine], dtype=torch.float32)
        inst.pred_classes = torch.tensor([to_contiguous[d["category_id"]] for d in mine], dtype=torch.int64)
        if mine and "segmentation" in mine[0]:
            masks = np.stack([mask_util.decode(d["segmentation"]) for d in mine])
            inst.pred_masks = torch.from_numpy(masks.astype(bool))
        elif "segmentation" in (dets[0] if dets else {}):
            inst.pred_masks = torch.zeros((0, img["height"], img["width"]), dtype=torch.bool)
        inputs.append({"image_id": img["id"], "height": img["height"], "width": img["width"]})
        outputs.append({"instances": inst})
    return inputs, outputs


def run(evaluator, inputs, outputs, batch: int = 2) -> dict:
    evaluator.reset()
    for s in range(0, len(inputs), batch):
        evaluator.process(inputs[s : s + batch], outputs[s : s + batch])
    return evaluator.evaluate()


def assert_results_equal(ours: dict, theirs: dict) -> None:
    assert list(ours) == list(theirs)
    for task in theirs:
        assert list(ours[task]) == list(theirs[task]), task
        for key, v in theirs[task].items():
            w = ours[task][key]
            assert (math.isnan(v) and math.isnan(w)) or abs(v - w) <= 1e-9 * 100, (task, key, w, v)


def hand_case(tmp_path, boxes_scores: list[tuple[list[float], float]], gt_boxes: list[list[float]]) -> dict:
    gt = {"images": [{"id": 1, "height": 200, "width": 200, "file_name": "1.jpg"}],
          "categories": [{"id": 3, "name": "thing"}, {"id": 7, "name": "other"}],
          "annotations": [{"id": i + 1, "image_id": 1, "category_id": 3, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                          for i, b in enumerate(gt_boxes)]}  # fmt: skip
    dets = [{"image_id": 1, "category_id": 3, "bbox": b, "score": s} for b, s in boxes_scores]
    name = register(tmp_path, gt)
    return run(ce.COCOEvaluator(name, distributed=False), *model_outputs(gt, dets, name))["bbox"]


def test_hand_worked_aps(tmp_path):
    """One 100x100 ground truth (large). An exact detection: 100 everywhere there is ground truth (up to
    pycocotools' tp / (tp + fp + eps)). A detection covering 62.5 of its 100 rows (IoU 0.625): a match at IoU
    0.50, 0.55 and 0.60 only, so AP50 100, AP75 0, AP 3/10 = 30. Three objects found at scores 0.9, 0.7 and
    0.6 around a miss at 0.8: precision 1, 1/2, 2/3, 3/4 at recall 1/3, 1/3, 2/3, 1; its envelope 1, 3/4,
    3/4, 3/4; of the 101 recall points the 34 up to 1/3 get 1 and the 67 above get 3/4 (without the
    envelope the 33 up to 2/3 would get 2/3): AP = (34 + 67 * 3/4) / 101 at every threshold."""
    exact = hand_case(tmp_path / "a", [([10, 10, 100, 100], 0.9)], [[10, 10, 100, 100]])
    assert [exact[k] for k in ("AP", "AP50", "AP75", "APl")] == pytest.approx([100] * 4, abs=1e-9)
    assert math.isnan(exact["APs"]) and math.isnan(exact["APm"]) and math.isnan(exact["AP-other"])
    partial = hand_case(tmp_path / "b", [([10, 10, 100, 62.5], 0.9)], [[10, 10, 100, 100]])
    assert partial["AP50"] == pytest.approx(100, abs=1e-9) and partial["AP75"] == 0
    assert partial["AP"] == pytest.approx(30, abs=1e-9)
    gts = [[0, 0, 50, 50], [100, 100, 50, 50], [0, 100, 50, 50]]
    three = hand_case(tmp_path / "c", [(gts[0], 0.9), ([60, 60, 20, 20], 0.8), (gts[1], 0.7), (gts[2], 0.6)], gts)
    expected = pytest.approx((34 + 67 * 3 / 4) / 101 * 100, abs=1e-9)
    assert three["AP"] == expected and three["AP50"] == expected and three["AP75"] == expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluator_equals_detectron2_coco_evaluator(tmp_path, seed):
    """Same dataset, same model outputs: our evaluator and detectron2 v0.6's own (official COCO API) give
    the same bbox and segm results, per class included; ours writes no file."""
    gt, dets = coco_random.dataset(seed, images=5)
    name = register(tmp_path, gt)
    inputs, outputs = model_outputs(gt, dets, name)
    out_dir = tmp_path / "ours"
    ours = run(ce.COCOEvaluator(name, output_dir=str(out_dir)), inputs, outputs)
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = run(D2COCOEvaluator(name, distributed=False, use_fast_impl=False), inputs, outputs)
    assert_results_equal(ours, theirs)
    assert set(ours) == {"bbox", "segm"} and not out_dir.exists()


def test_evaluator_without_detections_and_with_written_results(tmp_path):
    gt, dets = coco_random.dataset(1, images=3, masks=False)
    name = register(tmp_path, gt)
    inputs, outputs = model_outputs(gt, [], name)
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = run(D2COCOEvaluator(name, distributed=False, use_fast_impl=False), inputs, outputs)
    assert_results_equal(run(ce.COCOEvaluator(name, distributed=False), inputs, outputs), theirs)
    evaluator = ce.COCOEvaluator(name, distributed=False, output_dir=str(tmp_path / "out"), write_results=True)
    run(evaluator, *model_outputs(gt, dets, name))
    written = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    assert len(written) == sum(d["category_id"] in {c["id"] for c in gt["categories"]} for d in dets)


def _two_ranks(rank: int, port: int, json_file: str, tmp: str) -> None:
    """A gloo process of a 2-process group: registers the dataset, evaluates its half of the images."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", world_size=2, rank=rank)
    try:
        name = "xfer_coco_eval_two_ranks"
        register_coco_instances(name, {}, json_file, tmp)
        with contextlib.redirect_stdout(io.StringIO()):
            DatasetCatalog.get(name)
        with open(os.path.join(tmp, "dets.json")) as f:
            gt, dets = json.load(f)
        inputs, outputs = model_outputs(gt, dets, name)
        result = run(ce.COCOEvaluator(name), inputs[rank::2], outputs[rank::2])
        if rank == 0:
            with open(os.path.join(tmp, "rank0.json"), "w") as f:
                json.dump(result, f)
        else:
            assert result == {}
        dist.barrier()  # neither rank tears the group down while the other still uses it (gloo can abort then)
    finally:
        dist.destroy_process_group()


@pytest.mark.launch
def test_evaluator_gathers_the_ranks_results(tmp_path):
    """Two gloo processes, each with half the images: rank 0 reports what one process with all of them does."""
    gt, dets = coco_random.dataset(4, images=6)
    name = register(tmp_path, gt)
    single = run(ce.COCOEvaluator(name, distributed=False), *model_outputs(gt, dets, name))
    (tmp_path / "dets.json").write_text(json.dumps([gt, dets]))
    torch.multiprocessing.spawn(_two_ranks, args=(free_port(), MetadataCatalog.get(name).json_file, str(tmp_path)),
                                nprocs=2)  # fmt: skip
    gathered = json.loads((tmp_path / "rank0.json").read_text())
    assert_results_equal(gathered, json.loads(json.dumps(single)))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


HIDDEN = """
import json, logging, sys
sys.modules["hotcoco"] = None  # import hotcoco now raises ImportError, as where it is not installed
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from xfer.benchmarks import coco_eval as ce
gt, dets = json.load(sys.stdin)
truth = ce.CocoTruth(gt)
print("reason:", ce.hotcoco_takes(truth))
got = ce.coco_eval(truth, dets, "bbox")
print(json.dumps({"engine": got.engine, "stats": got.stats.tolist()}))
"""


@pytest.mark.launch  # a Python process of its own, to hide hotcoco from it
def test_without_hotcoco_the_numpy_engine_gives_pycocotools_numbers():
    """hotcoco is optional (``xfer[coco]``): hidden, "auto" takes the numpy engine, says why, and scores as
    pycocotools does."""
    import subprocess

    gt, dets = coco_random.dataset(3)
    run = subprocess.run([sys.executable, "-c", HIDDEN], input=json.dumps([gt, dets]), capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "reason: hotcoco is not installed" in run.stdout
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["engine"] == "numpy"
    assert np.max(np.abs(np.array(got["stats"]) - oracle(gt, dets, "bbox").stats)) <= 1e-9


@pytest.mark.parametrize("ids, why", [
    ((1, 2, 3), ""),  # hotcoco gives pycocotools' numbers
    ((0, 1, 2), "the category holding an annotation id 0 by xfer's NumPy engine, since pycocotools does not count a "
                "match to it"),
    ((-1, 1, 2), "the ground truth has a negative id, which hotcoco refuses"),
])  # fmt: skip
def test_the_launch_names_the_engine_each_test_dataset_gets(tmp_path, ids, why):
    """What the launch prints per test dataset is what the trial's evaluator will decide: hotcoco, or the NumPy
    engine with the reason (hotcoco_takes on the same ground truth)."""
    pytest.importorskip("hotcoco")
    from xfer.benchmarks import coco

    annotations = [{"id": i, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0}
                   for i in ids]  # fmt: skip
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "height": 8, "width": 8}], "annotations": annotations,
          "categories": [{"id": 1, "name": "thing"}]}  # fmt: skip
    json_file = tmp_path / "coco" / "annotations" / "instances_val2017.json"
    json_file.parent.mkdir(parents=True)
    json_file.write_text(json.dumps(gt))
    (line,) = coco.evaluation_notes(tmp_path, ["coco_2017_val"], "xfer", tmp_path / "cache")
    version = metadata.version("hotcoco")
    hot = f"coco_2017_val: scored by hotcoco {version}, pycocotools' numbers"
    assert line == (f"coco_2017_val: scored by xfer's NumPy engine, pycocotools' numbers ({why})" if "negative" in why
                    else f"{hot} ({why})" if why else hot)  # fmt: skip
    truth = ce.CocoTruth(gt)  # the trial's own decision, on the same file
    assert (ce.hotcoco_takes(truth) or "") == (why if "negative" in why else "")
    assert ce.zero_id_categories(truth) == ([0] if 0 in ids else [])
    assert coco.evaluation_notes(tmp_path, ["coco_2017_val"], "detectron2") == [
        "coco_2017_val: scored by detectron2's COCOEvaluator (pycocotools)"]
