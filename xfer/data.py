"""Pascal VOC datasets for detectron2: checked before anything runs, registered under the config's root.

detectron2 registers ``voc_2007_trainval`` & co. at import time under ``$DETECTRON2_DATASETS``; xfer
re-registers the names the recipe uses under the root the config chose, so the recipe keeps the
seed's dataset names and the data can live anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from xfer import d2compat

_NAME = re.compile(r"^voc_(\d{4})_(\w+)$")


def parse(name: str) -> tuple[str, str]:
    """``voc_2007_trainval`` -> (``2007``, ``trainval``)."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"{name!r} is not a VOC dataset name like voc_2007_trainval")
    return m.group(1), m.group(2)


def problems(root: Path, names: Iterable[str]) -> list[str]:
    """One message per missing piece of the VOC layout detectron2 expects under ``root``."""
    found = []
    for name in names:
        year, split = parse(name)
        voc = Path(root).resolve() / f"VOC{year}"
        need = [voc / "Annotations", voc / "JPEGImages", voc / "ImageSets" / "Main" / f"{split}.txt"]
        missing = [str(p) for p in need if not p.exists()]
        if missing:
            found.append(
                f"dataset {name}: missing {', '.join(missing)}. Put VOC{year} (VOCdevkit layout: Annotations/, "
                f"JPEGImages/, ImageSets/Main/) under {Path(root).resolve()}/, or point DETECTRON2_DATASETS (or "
                f"paths.datasets=...) at the folder that holds VOC2007/ and VOC2012/."
            )
    return found


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
