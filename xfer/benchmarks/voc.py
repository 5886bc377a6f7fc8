"""The VOC format (``benchmark.format: voc``): Pascal VOC datasets checked before anything runs, registered
under the config's root, and evaluated with the VOC07 metric (see ``xfer.benchmarks``).

detectron2 registers ``voc_2007_trainval`` & co. at import time under ``$DETECTRON2_DATASETS``; xfer
re-registers the names the recipe uses under the root the config chose, so the recipe keeps the
seed's dataset names and the data can live anywhere.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path
from xml.etree import ElementTree as ET

from xfer import d2compat
from xfer.store.files import VOC_METRICS

_NAME = re.compile(r"^voc_(\d{4})_(\w+)$")
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
SHOWN = 3  # bad files named per split; the rest are counted
METRIC_NAMES = VOC_METRICS  # of detectron2's VOC evaluators, in the seed's table order (files: old results too)
EVALUATORS = ("xfer", "detectron2")  # xfer.benchmarks.voc_eval (the same AP, faster), or detectron2's own
# The libraries each evaluator computes its numbers with, whose versions are part of a trial's identity
# (xfer's VOC evaluator is xfer's own NumPy code: no library of its own).
EVALUATOR_LIBRARIES = {"xfer": (), "detectron2": ("detectron2",)}


def parse(name: str) -> tuple[str, str]:
    """``voc_2007_trainval`` -> (``2007``, ``trainval``)."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"{name!r} is not a VOC dataset name like voc_2007_trainval")
    return m.group(1), m.group(2)


def annotation_problem(xml: Path, jpg: Path, evaluated: bool = False) -> str | None:
    """What would make detectron2's VOC loader fail on this image, if anything; ``evaluated``: or the evaluators
    (a test split's annotations). Each field is read as they read it: the loader takes the class name as written
    (``class_names.index(name)``, no stripping) and float coordinates; the evaluators (detectron2's ``parse_rec``
    and xfer's, the same) take integer coordinates, an integer ``difficult`` and ``truncated``, and a ``pose``."""
    if not jpg.is_file():
        return f"{jpg.name} missing"
    try:
        root = ET.parse(xml).getroot()
    except FileNotFoundError:
        return f"{xml.name} missing"
    except ET.ParseError as e:
        return f"{xml.name}: not well-formed XML ({e})"
    try:
        int(root.findtext("size/width")), int(root.findtext("size/height"))
        for obj in root.iter("object"):
            if obj.findtext("name") not in VOC_CLASSES:
                return f"{xml.name}: object class {obj.findtext('name')!r} is not one of the 20 VOC classes (written " \
                       "exactly: no spaces or line breaks around it)"  # fmt: skip
            number = int if evaluated else float
            box = [number(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            if not (box[0] <= box[2] and box[1] <= box[3]):
                return f"{xml.name}: bndbox {box} has xmax < xmin or ymax < ymin"
            if evaluated:
                int(obj.findtext("difficult")), int(obj.findtext("truncated"))
                if obj.find("pose") is None:
                    raise ValueError("no pose")
    except (TypeError, ValueError) as e:
        what = "integer bndbox, difficult, truncated and pose (a test split's, as the evaluators read them)" \
            if evaluated else "numeric bndbox"  # fmt: skip
        return f"{xml.name}: missing or malformed size or object field: it needs an integer size and an {what} ({e})"
    return None


@functools.cache
def split_problems(voc: Path, split: str) -> tuple[str, ...]:
    """Problems of one VOC split, read once per process (a sweep asks for each split many times)."""
    need = [voc / "Annotations", voc / "JPEGImages", voc / "ImageSets" / "Main" / f"{split}.txt"]
    missing = [str(p) for p in need if not p.exists()]
    if missing:
        return (f"missing {', '.join(missing)}",)
    ids = need[2].read_text().split()
    if not ids:
        return (f"{need[2]} lists no images",)
    evaluated = split == "test"  # VOC's test split is the one the recipes evaluate on
    bad = [p for i in ids
           if (p := annotation_problem(voc / "Annotations" / f"{i}.xml", voc / "JPEGImages" / f"{i}.jpg", evaluated))]
    if not bad:
        return ()
    more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    return (
        f"{len(bad)} of {len(ids)} images in {voc}/ are unusable: {'; '.join(bad[:SHOWN])}{more}. Fix those "
        f"files, or remove their ids from {need[2]}",
    )


def problems(root: Path, names: Iterable[str], num_classes: int | None = None, cache: Path | None = None,
             masks: bool = False) -> list[str]:  # fmt: skip
    """One message per VOC split that detectron2 could not load from ``root``, saying how to fix it, and one if the
    recipe's ``NUM_CLASSES`` is not VOC's 20, or it trains masks (``masks``: ``MODEL.MASK_ON``), which VOC's boxes
    cannot give. (VOC files are small and read once per process: no ``cache``.)"""
    found = ["VOC has boxes only, and the recipe trains masks (MODEL.MASK_ON): drop +d2.MODEL.MASK_ON=true, or use a "
             "COCO benchmark"] if masks else []  # fmt: skip
    for name in names:
        year, split = parse(name)
        for problem in split_problems(Path(root).resolve() / f"VOC{year}", split):
            hint = (
                f" Put VOC{year} (VOCdevkit layout: Annotations/, JPEGImages/, ImageSets/Main/) under "
                f"{Path(root).resolve()}/, or point DETECTRON2_DATASETS (or paths.datasets=...) at the folder "
                "that holds VOC2007/ and VOC2012/."
            )
            found.append(f"dataset {name}: {problem}." + (hint if problem.startswith("missing") else ""))
    if num_classes is not None and num_classes != len(VOC_CLASSES):
        found.append(f"the recipe's MODEL.ROI_HEADS.NUM_CLASSES is {num_classes}, VOC has {len(VOC_CLASSES)} classes: "
                     f"drop the override that sets it (a +d2.MODEL.ROI_HEADS.NUM_CLASSES is merged last), or pass "
                     f"benchmark.d2.MODEL.ROI_HEADS.NUM_CLASSES={len(VOC_CLASSES)}.")  # fmt: skip
    return found


def evaluation_notes(root: Path, names: Iterable[str], evaluator: str, cache: Path | None = None) -> list[str]:
    """Nothing to say at launch: VOC's evaluators score every dataset the check passes the same way."""
    return []


def content_files(root: Path, name: str) -> list[Path]:
    """The files that say what a VOC split holds, for the trial's identity: its image list and the annotation
    of every image it lists (the images themselves are too large to hash at every launch). A list that cannot
    be read gives just the list's path: the checks name the problem."""
    year, split = parse(name)
    voc = Path(root) / f"VOC{year}"
    listing = voc / "ImageSets" / "Main" / f"{split}.txt"
    try:
        ids = listing.read_text().split()
    except OSError:
        return [listing]
    return [listing, *(voc / "Annotations" / f"{i}.xml" for i in ids)]


def register(root: Path, names: Iterable[str]) -> None:
    """(Re-)register each VOC split under ``root`` with detectron2's VOC loader and metadata."""
    d2compat.ensure()
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_pascal_voc

    for name in names:
        year, split = parse(name)
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_pascal_voc(name, str(Path(root) / f"VOC{year}"), split, int(year))


def tasks(cfg) -> tuple[str, ...]:
    """VOC evaluates boxes only, whatever the model predicts."""
    return ("bbox",)


def metric_names(tasks: tuple[str, ...]) -> tuple[str, ...]:
    return METRIC_NAMES


def evaluator(kind: str, dataset_name: str, tasks: tuple[str, ...] = ("bbox",)):
    """``xfer``: the vectorized VOC evaluator (the same AP, see ``voc_eval``); ``detectron2``: its
    ``PascalVOCDetectionEvaluator``. ``tasks``: boxes only (:func:`tasks`)."""
    if kind == "detectron2":
        d2compat.ensure()
        from detectron2.evaluation import PascalVOCDetectionEvaluator

        return PascalVOCDetectionEvaluator(dataset_name)
    from xfer.benchmarks.voc_eval import VOCEvaluator

    return VOCEvaluator(dataset_name)


def metrics(results: dict) -> dict[str, float]:
    """AP50/AP/AP75 of the one test set, from what ``inference_on_dataset`` returned (``{"bbox": {...}}``)."""
    return {m: results["bbox"].get(m) for m in METRIC_NAMES}
