"""The COCO format (``benchmark.format: coco``): instances-JSON datasets checked before anything runs,
registered under the config's root, and evaluated for box and mask AP (see ``xfer.benchmarks``).

Names and files are detectron2's (``coco_2017_train`` is ``coco/train2017`` with
``coco/annotations/instances_train2017.json`` under ``$DETECTRON2_DATASETS``), plus DenseCL's 10% split
``coco_2017_train_0.1``. A real instances JSON is hundreds of MB: the launcher reads each file once and keeps
what it found under ``paths.cache``, keyed by the file's state (``xfer.store.digests``); whether the
images it lists are there is checked on every launch.
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from xfer import d2compat
from xfer.benchmarks.coco_engine import ZERO_ID, hotcoco_module, hotcoco_quirk
from xfer.store.digests import file_state, state_entry
from xfer.store.files import write_text_atomic

SPLITS = {  # detectron2/data/datasets/builtin.py's _PREDEFINED_SPLITS_COCO["coco"], and DenseCL's train_net.py
    "coco_2017_train": ("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": ("coco/val2017", "coco/annotations/instances_val2017.json"),
    "coco_2017_train_0.1": ("coco/train2017", "coco/annotations/instances_train2017_0.1.json"),
}
EVALUATORS = ("xfer", "detectron2")  # xfer.benchmarks.coco_eval (pycocotools' numbers, fast) or detectron2's own
# The libraries each evaluator computes its numbers with: their versions are part of a trial's identity.
EVALUATOR_LIBRARIES = {"xfer": ("hotcoco", "pycocotools"), "detectron2": ("detectron2", "pycocotools")}
STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # of each task, as detectron2's COCOEvaluator names them
TASKS = {"bbox": "box", "segm": "mask"}
METRIC_NAMES = tuple(f"{TASKS[t]}_{s}" for t in TASKS for s in ("AP", "AP50", "AP75"))  # the table's columns
SUBSETS = ("coco_2017_train_0.1",)  # drawn from train2017; DenseCL publishes neither its file nor how it drew it
SUBSET_HINT = (" DenseCL does not publish its 10% file or how it was drawn; python -m xfer coco-subset --datasets "
               "<the folder that holds coco/> writes one (10% of train2017's images, uniformly at random, seed 0).")
SHOWN = 3  # bad entries named per file; the rest are counted


NUMBER = frozenset({int, float})  # by type(): JSON numbers; a bool (an int to isinstance) is not one
ANN_FIX = "fix or drop them (detectron2's loader, pycocotools or hotcoco would fail on them, some after training)"
CHECKS = 4  # the version of what json_problems refuses, kept with each cached result: an older result is redone


def _is_id(value: object) -> bool:
    """A COCO id is a JSON integer: hotcoco refuses 2.5, and a bool (Python's int) too. An integral float (7.0,
    as some exporters write ids) is one: detectron2, pycocotools, hotcoco and xfer's engine all take it as 7."""
    return type(value) is int or (type(value) is float and value.is_integer())


def _segmentation_problem(seg: object, needed: bool) -> str | None:
    """What is wrong with one annotation's ``segmentation``, or None. ``needed``: other annotations of the file
    have one, so the file is for masks: detectron2's ``annotations_to_instances`` (training with MODEL.MASK_ON)
    and pycocotools' mask AP (crowd regions included) read it from every annotation."""
    if seg is None:
        return ("has no segmentation, though other annotations of the file have one (Mask R-CNN trains and scores "
                "masks from every annotation): give it a polygon or RLE, or drop every segmentation for a box-only "
                "model") if needed else None  # fmt: skip
    if isinstance(seg, list):
        if not seg or any(not isinstance(p, list) or len(p) < 6 or len(p) % 2 for p in seg):
            return "has a polygon that is not an even list of at least 6 coordinates"
        if not NUMBER.issuperset(map(type, itertools.chain.from_iterable(seg))):  # one C-level pass, no exceptions
            return "has a polygon coordinate that is not a number"
        return None
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        return None
    return "has a segmentation that is neither polygons nor RLE"


def _annotation_problem(ann: Mapping, images: set, categories: set, masks: bool) -> str | None:
    """The first thing wrong with one annotation, or None (one per annotation: the message stays short). ``masks``:
    the file has segmentations (:func:`_segmentation_problem`)."""
    ann_id = ann.get("id")
    if not _is_id(ann_id):
        return f"annotation {ann_id!r} has an id that is not an integer"
    image_id, category_id = ann.get("image_id"), ann.get("category_id")
    if not _is_id(image_id) or image_id not in images:
        return f"annotation {ann_id} names image_id {image_id!r}, which is not in images"
    if not _is_id(category_id) or category_id not in categories:
        return f"annotation {ann_id} names category_id {category_id!r}, which is not in categories"
    box = ann.get("bbox")
    if not (isinstance(box, list) and len(box) == 4 and NUMBER.issuperset(map(type, box))
            and all(map(math.isfinite, box)) and box[2] >= 0 and box[3] >= 0):  # fmt: skip
        return f"annotation {ann_id} has bbox {box!r}, not [x, y, width, height] with width, height >= 0"
    if type(ann.get("area")) not in NUMBER or not math.isfinite(ann["area"]):  # COCOeval sizes ground truth by it
        return (f"annotation {ann_id} has area {ann.get('area')!r}, not a number (pycocotools' COCOeval and xfer's "
                "evaluator read it to score AP by object size)")  # fmt: skip
    why = _segmentation_problem(ann.get("segmentation"), masks)
    return f"annotation {ann_id} {why}" if why else None


def _image_problem(image: Mapping) -> str | None:
    """The first thing wrong with one image entry, or None: detectron2's loader reads ``id``, ``file_name``,
    ``height`` and ``width`` of each, and the evaluators size masks by them."""
    if not _is_id(image.get("id")):
        return f"image {image.get('file_name')!r} has id {image.get('id')!r}, not an integer"
    if not isinstance(image.get("file_name"), str) or not image["file_name"]:
        return f"image {image['id']} has file_name {image.get('file_name')!r}, not a file name"
    size = [image.get(k) for k in ("width", "height")]
    if not all(type(v) is int and v > 0 for v in size):  # pycocotools' frPyObjects takes no float size
        return f"image {image['id']} has width, height {size}, not two positive integers"
    return None


def _repeated(ids: list, what: str) -> str | None:
    """The ids of ``what`` (annotation, image, category) given to more than one entry, or None: detectron2
    asserts annotation ids are unique, and pycocotools indexes all three by id (a later entry hides an earlier)."""
    if len(set(ids)) == len(ids):
        return None
    twice = [f"{i} ({n} times)" for i, n in collections.Counter(ids).items() if n > 1]
    more = f" and {len(twice) - SHOWN} more" if len(twice) > SHOWN else ""
    return f"{what} ids are not unique: {', '.join(twice[:SHOWN])}{more}; give each {what} its own id"


def _unusable(path: str, what: str, bad: list[str], total: int, fix: str) -> str:
    """One line: how many entries of ``what`` are unusable, the first :data:`SHOWN`, and the fix."""
    more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    return f"{path}: {len(bad)} of {total} {what} are unusable: {'; '.join(bad[:SHOWN])}{more}; {fix}"


def entry_problems(coco: Mapping, path: str) -> list[str]:
    """What is wrong with the images, categories and annotations of one parsed instances file, one line each kind.
    Checked before anything runs, since each of these fails only after training (when the test set is loaded or
    scored). Simple loops, no exception per entry: real train2017 has 860k annotations."""
    images = [i if isinstance(i, dict) else {} for i in coco["images"]]
    cats = [c if isinstance(c, dict) else {} for c in coco["categories"]]
    anns = [a if isinstance(a, dict) else {} for a in coco["annotations"]]
    found = []
    if bad := [p for i in images if (p := _image_problem(i))]:
        found.append(_unusable(path, "images", bad, len(images), "give each an integer id, file_name, width, height"))
    if bad := [f"category {c.get('id')!r} {c.get('name')!r}" for c in cats
               if not _is_id(c.get("id")) or not isinstance(c.get("name"), str)]:  # fmt: skip
        found.append(_unusable(path, "categories", bad, len(cats), "give each an integer id and a name"))
    image_ids = {i.get("id") for i in images if _is_id(i.get("id"))}
    cat_ids = {c.get("id") for c in cats if _is_id(c.get("id"))}
    masks = any(a.get("segmentation") is not None for a in anns)
    if bad := [p for a in anns if (p := _annotation_problem(a, image_ids, cat_ids, masks))]:
        found.append(_unusable(path, "annotations", bad, len(anns), ANN_FIX))
    for what, entries in (("image", images), ("category", cats), ("annotation", anns)):
        if why := _repeated([x.get("id") for x in entries if _is_id(x.get("id"))], what):
            found.append(f"{path}: {why}")
    return found


def json_problems(json_file: Path) -> tuple[list[str], list, list[str], str, bool, int]:
    """(problems, categories as [id, name] pairs, image file names, :func:`hotcoco_quirk`, whether annotations
    without any segmentation, how many images have an annotation that is not a crowd region: what detectron2
    trains on, FILTER_EMPTY_ANNOTATIONS dropping the others) of one instances JSON."""
    try:
        coco = json.loads(json_file.read_bytes())
    except (OSError, ValueError) as e:
        return [f"{json_file}: not readable JSON ({type(e).__name__}: {str(e)[:120]})"], [], [], "", False, 0
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list) for k in ("images", "annotations",
                                                                                      "categories")):  # fmt: skip
        return [f"{json_file}: not a COCO instances file (it needs lists 'images', 'annotations', "
                "'categories')"], [], [], "", False, 0  # fmt: skip
    found = entry_problems(coco, str(json_file))
    categories = sorted([c["id"], c["name"]] for c in coco["categories"]
                        if isinstance(c, dict) and _is_id(c.get("id")) and isinstance(c.get("name"), str))  # fmt: skip
    files = [i["file_name"] for i in coco["images"] if isinstance(i, dict) and isinstance(i.get("file_name"), str)]
    anns = [a for a in coco["annotations"] if isinstance(a, dict)]
    boxes_only = bool(anns) and all(a.get("segmentation") is None for a in anns)
    trainable = len({a.get("image_id") for a in anns if not a.get("iscrowd")})
    return found, categories, files, hotcoco_quirk(coco), boxes_only, trainable  # (a nameless image: refused above)


def _read(json_file: Path, cache: Path | None) -> tuple[list[str], list, list[str], str, bool, int]:
    """:func:`json_problems`, kept on disk per state of the JSON (``xfer.store.digests.file_state``): a launch
    parses it at most once. A damaged entry, or one of an older :data:`CHECKS` (it may accept what this one
    refuses), is parsed again."""
    if cache is None:
        return json_problems(json_file)
    entry = state_entry(Path(cache) / "coco_checks", file_state(json_file)).with_suffix(".json")
    try:
        kept = json.loads(entry.read_text())
        if kept["checks"] != CHECKS:
            raise KeyError("checks")
        return (kept["problems"], kept["categories"], kept["files"], kept["hotcoco"], kept["boxes_only"],
                int(kept["trainable"]))  # fmt: skip
    except (OSError, ValueError, TypeError, KeyError):  # none yet, damaged, or of an older xfer: parse it again
        pass
    found, categories, files, quirk, boxes_only, trainable = json_problems(json_file)
    entry.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(entry, json.dumps({"checks": CHECKS, "problems": found, "categories": categories, "files": files,
                                         "hotcoco": quirk, "boxes_only": boxes_only, "trainable": trainable}))  # fmt: skip
    return found, categories, files, quirk, boxes_only, trainable


def missing_images(image_dir: Path, files: list[str], json_name: str) -> list[str]:
    """The images a JSON lists that are not in ``image_dir`` (checked on every launch: files come and go). One
    listing of the folder finds the files directly in it (118k stat calls took 2 s; the listing 0.4 s); a name
    not among them (in a subfolder, say) is looked for on its own."""
    try:
        with os.scandir(image_dir) as entries:
            present = {e.name for e in entries if e.is_file()}
    except OSError:
        present = set()
    missing = [f for f in files if f not in present and not (image_dir / f).is_file()]
    if not missing:
        return []
    more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
    return [f"{len(missing)} of {len(files)} images of {json_name} are missing from {image_dir}/: "
            f"{', '.join(missing[:SHOWN])}{more}"]  # fmt: skip


def problems(root: Path, names: Iterable[str], num_classes: int | None = None, cache: Path | None = None,
             masks: bool = False) -> list[str]:  # fmt: skip
    """One message per COCO dataset detectron2 could not load from ``root``, saying how to fix it; then whether
    the datasets share one category list, and whether it has the recipe's ``NUM_CLASSES`` entries. ``masks``: the
    recipe trains and scores masks (``MODEL.MASK_ON``), which a file of boxes only cannot give: detectron2 fails
    at its first iteration on one, and mask AP of a test set without segmentations fails after training."""
    root, found, seen = Path(root).resolve(), [], {}
    hint = (f" Put COCO (coco/train2017/, coco/val2017/, coco/annotations/) under {root}/, or point "
            "DETECTRON2_DATASETS (or paths.datasets=...) at the folder that holds coco/.")  # fmt: skip
    for name in names:
        if name not in SPLITS:
            found.append(f"dataset {name}: not a COCO dataset xfer knows; use one of {', '.join(SPLITS)}.")
            continue
        image_dir, json_file = (root / p for p in SPLITS[name])
        missing = [str(p) for p in (json_file, image_dir) if not p.exists()]
        if missing:
            found.append(f"dataset {name}: missing {', '.join(missing)}." + (SUBSET_HINT if name in SUBSETS else hint))
            continue
        mine, seen[name], files, _, boxes_only, trainable = _read(json_file, cache)
        mine += missing_images(image_dir, files, json_file.name)
        if not files and not mine:  # detectron2 refuses an empty dataset ("Dataset ... is empty!")
            mine.append(f"{json_file.name} lists no images: give it the images and annotations of the split")
        elif name.startswith("coco_2017_train") and not trainable and not mine:
            mine.append(f"{json_file.name} has no image with an annotation that is not a crowd region: detectron2 "
                        "drops such images from training (DATALOADER.FILTER_EMPTY_ANNOTATIONS), leaving it "
                        "nothing to train on")  # fmt: skip
        if masks and boxes_only:
            mine.append(f"{json_file.name} has boxes only (no annotation has a segmentation), and the recipe "
                        "trains and scores masks (MODEL.MASK_ON): give the annotations polygons or RLE, or train "
                        "a box-only model with +d2.MODEL.MASK_ON=false")  # fmt: skip
        found += [f"dataset {name}: {p}." for p in mine]
    lists = {tuple(map(tuple, c)) for c in seen.values() if c}
    if len(lists) > 1:
        sizes = ", ".join(f"{n} has {len(c)}" for n, c in seen.items())
        found.append(f"datasets {', '.join(seen)}: their categories differ ({sizes}; ids or names differ): train "
                     "and test must share one category list.")  # fmt: skip
    elif lists and num_classes is not None and len(next(iter(lists))) != num_classes:
        n = len(next(iter(lists)))
        found.append(f"datasets {', '.join(seen)} have {n} categories, the recipe's MODEL.ROI_HEADS.NUM_CLASSES is "
                     f"{num_classes}: use the benchmark made for these datasets, drop the override that sets it (a "
                     f"+d2.MODEL.ROI_HEADS.NUM_CLASSES is merged last), or pass "
                     f"benchmark.d2.MODEL.ROI_HEADS.NUM_CLASSES={n}.")  # fmt: skip
    return found


def evaluation_notes(root: Path, names: Iterable[str], evaluator: str, cache: Path | None = None) -> list[str]:
    """One line per test dataset naming what will score it, decided at launch as each trial's evaluator decides
    it (``xfer.benchmarks.coco_eval``): hotcoco, or xfer's NumPy engine and why. Datasets whose check failed say
    nothing (the launch stops on them)."""
    import importlib.metadata

    out = []
    for name in names:
        if evaluator != "xfer":
            out.append(f"{name}: scored by detectron2's COCOEvaluator (pycocotools)")
            continue
        image_dir, json_file = (Path(root) / p for p in SPLITS.get(name, ("", "")))
        if name not in SPLITS or not json_file.is_file():
            continue
        why = hotcoco_module()[1] or _read(json_file, cache)[3]  # by importing it, as the trial's evaluator does
        if why in ("", ZERO_ID):
            hot = f"{name}: scored by hotcoco {importlib.metadata.version('hotcoco')}, pycocotools' numbers"
            out.append(f"{hot} ({why})" if why else hot)
        else:
            out.append(f"{name}: scored by xfer's NumPy engine, pycocotools' numbers ({why})")
    return out


def content_files(root: Path, name: str) -> list[Path]:
    """The file that says what a COCO dataset holds, for the trial's identity: its instances JSON (for the 10%
    split, the drawn image ids are in it)."""
    return [Path(root) / SPLITS[name][1]] if name in SPLITS else []


def register(root: Path, names: Iterable[str]) -> None:
    """(Re-)register each COCO dataset under ``root`` with detectron2's COCO loader (its metadata from the JSON)."""
    d2compat.ensure()
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    for name in names:
        image_dir, json_file = (Path(root) / p for p in SPLITS[name])
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_coco_instances(name, {}, str(json_file), str(image_dir))


def tasks(cfg) -> tuple[str, ...]:
    """What a model of the detectron2 config ``cfg`` predicts, as COCO evaluation tasks: boxes, and masks only
    where ``MODEL.MASK_ON`` (a box-only model has no mask AP, not a mask AP of 0)."""
    return tuple(TASKS) if cfg.MODEL.MASK_ON else ("bbox",)


def metric_names(tasks: tuple[str, ...]) -> tuple[str, ...]:
    """The table's columns of those tasks, in :data:`METRIC_NAMES`' order."""
    return tuple(m for m in METRIC_NAMES if any(m.startswith(f"{TASKS[t]}_") for t in tasks))


def evaluator(kind: str, dataset_name: str, tasks: tuple[str, ...] = tuple(TASKS)):
    """Box and mask AP with pycocotools' numbers, no files written; ``kind`` is one of :data:`EVALUATORS` (the
    launch checked it). ``xfer``: :class:`xfer.benchmarks.coco_eval.COCOEvaluator` (hotcoco, 15-34x faster at
    val2017 scale). ``detectron2``: its ``COCOEvaluator`` on pycocotools itself (``use_fast_impl=False``: no
    compiled code needed, and the official implementation rather than detectron2's C++ one). ``tasks``: what the
    model predicts (:func:`tasks`)."""
    d2compat.ensure()
    if kind == "xfer":
        # hotcoco's thread pool takes the process's CPU share where the launcher set one (one OpenMP thread per
        # local trial process): two trials side by side must not each spread over every core.
        if os.environ.get("OMP_NUM_THREADS"):
            os.environ.setdefault("RAYON_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
        from xfer.benchmarks.coco_eval import COCOEvaluator as Fast

        return Fast(dataset_name, tasks=tasks, distributed=True)
    from detectron2.evaluation import COCOEvaluator

    return COCOEvaluator(dataset_name, tasks=tasks, distributed=True, output_dir=None, use_fast_impl=False)


def metrics(results: dict) -> dict[str, float]:
    """box_AP ... mask_APl (12 values; 6 of a box-only model) from detectron2's ``{"bbox": {...}, "segm": {...}}``;
    the table shows :func:`metric_names`, result.json keeps all."""
    return {f"{TASKS[t]}_{s}": results[t].get(s) for t in TASKS if t in results for s in STATS}
