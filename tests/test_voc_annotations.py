"""The VOC check against what reads the files after it: each hand edit of an annotation below is refused by the
check exactly where detectron2's own loader (``load_voc_instances``, for every split) or its evaluator's reader
(``parse_rec``, for the test split) fails on it. A trial on an edit the check let through trained, then failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from xfer import d2compat
from xfer.benchmarks import voc
from xfer.smoke.scenes import annotation

d2compat.ensure()
from detectron2.data.datasets.pascal_voc import load_voc_instances  # noqa: E402
from detectron2.evaluation.pascal_voc_evaluation import parse_rec  # noqa: E402

PLAIN = annotation("img", 64, 48, [(11, False, (4, 5, 30, 40)), (3, True, (10, 10, 18, 20))]).decode()
EDITS = {  # name: (text to find, text to put instead), in the first object
    "as made": ("", ""),
    "float coordinate": ("<xmin>5</xmin>", "<xmin>5.5</xmin>"),
    "no difficult": ("<difficult>0</difficult>", ""),
    "no truncated": ("<truncated>0</truncated>", ""),
    "no pose": ("<pose>Unspecified</pose>", ""),
    "name with line breaks": ("<name>dog</name>", "<name>\n  dog\n</name>"),
    "name with a space": ("<name>dog</name>", "<name>dog </name>"),
    "difficult as a word": ("<difficult>0</difficult>", "<difficult>no</difficult>"),
    "no ymax": ("<ymax>41</ymax>", ""),
}


def made(root: Path, edit: tuple[str, str]) -> Path:
    """A VOC2007 folder of two images, the first's annotation the edit of :data:`PLAIN`, listed in test and trainval
    (two: detectron2's loader reads the list with ``np.loadtxt``, which makes one id a 0-d array it cannot iterate)."""
    folder = root / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True)
    old, new = edit
    assert old in PLAIN
    (folder / "Annotations/img.xml").write_text(PLAIN.replace(old, new, 1) if old else PLAIN)
    (folder / "Annotations/plain.xml").write_text(PLAIN)
    for name in ("img", "plain"):
        (folder / f"JPEGImages/{name}.jpg").write_bytes(b"\xff\xd8")  # the loaders read no pixels
    for split in ("test", "trainval"):
        (folder / f"ImageSets/Main/{split}.txt").write_text("img\nplain\n")
    return folder


def fails(read) -> bool:
    try:
        read()
    except Exception:  # noqa: BLE001 (any failure of detectron2's readers is a failed trial)
        return True
    return False


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_the_check_refuses_what_detectron2s_readers_fail_on_and_nothing_else(tmp_path, edit):
    folder = made(tmp_path, EDITS[edit])
    xml, jpg = folder / "Annotations/img.xml", folder / "JPEGImages/img.jpg"
    loader_fails = fails(lambda: load_voc_instances(str(folder), "trainval", voc.VOC_CLASSES))
    evaluator_fails = loader_fails or fails(lambda: parse_rec(str(xml)))
    assert (voc.annotation_problem(xml, jpg) is not None) == loader_fails, edit
    assert (voc.annotation_problem(xml, jpg, evaluated=True) is not None) == evaluator_fails, edit
    voc.split_problems.cache_clear()
    assert bool(voc.split_problems(folder, "test")) == evaluator_fails
    assert bool(voc.split_problems(folder, "trainval")) == loader_fails
