"""Which engine scores a COCO ground truth, in the words the launch and the evaluator share.

xfer's evaluator (``xfer.benchmarks.coco_eval``) scores with hotcoco where hotcoco gives pycocotools' numbers and
leaves the rest to its NumPy engine; the launch (``xfer.benchmarks.coco``) says beforehand, once per test dataset,
what will score it. Both read the reasons from here, so that the launch's line and each trial's log use one
wording without the evaluator importing the launch's checks (which build it: no circle). Nothing here imports a
COCO library.
"""

from __future__ import annotations

from collections.abc import Mapping

# Why xfer's evaluator leaves a ground truth to its NumPy engine rather than hotcoco (xfer.benchmarks.coco_eval): the
# launch says so once per test dataset, each trial's log again.
HOTCOCO_MISSING = "hotcoco is not installed"
NEGATIVE_ID = "the ground truth has a negative id, which hotcoco refuses"
ZERO_ID = ("the category holding an annotation id 0 by xfer's NumPy engine, since pycocotools does not count a "
           "match to it")


def hotcoco_quirk(coco: Mapping) -> str:
    """Why hotcoco alone would not give pycocotools' numbers on this instances JSON ("" when it would): a negative
    annotation, image or category id (:data:`NEGATIVE_ID`: the NumPy engine scores it), or an annotation id 0
    (:data:`ZERO_ID`: hotcoco scores it but for that category)."""
    ids = {k: [x.get("id") for x in coco.get(k, ()) if isinstance(x, dict)] for k in ("annotations", "images",
                                                                                       "categories")}  # fmt: skip
    if any(isinstance(i, int | float) and i < 0 for found in ids.values() for i in found):
        return NEGATIVE_ID
    return ZERO_ID if any(i == 0 for i in ids["annotations"]) else ""
