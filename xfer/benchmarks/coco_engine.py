"""Which engine scores a COCO ground truth, in the words the launch and the evaluator share.

xfer's evaluator (``xfer.benchmarks.coco_eval``) scores with hotcoco where hotcoco gives pycocotools' numbers and
leaves the rest to its NumPy engine; the launch (``xfer.benchmarks.coco``) says beforehand, once per test dataset,
what will score it. Both read the reasons from here, so that the launch's line and each trial's log use one
wording without the evaluator importing the launch's checks (which build it: no circle). Importing this module
imports no COCO library; :func:`hotcoco_module` tries hotcoco, once per process, when asked.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import ModuleType

# Why xfer's evaluator leaves a ground truth to its NumPy engine rather than hotcoco (xfer.benchmarks.coco_eval): the
# launch says so once per test dataset, each trial's log again.
HOTCOCO_MISSING = "hotcoco is not installed"
HOTCOCO_BROKEN = "hotcoco failed to import: {error}"  # installed, but importing it raised (a broken native extension)
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


@functools.cache
def hotcoco_module() -> tuple[ModuleType | None, str]:
    """(hotcoco, "") where it imports, else (None, why): :data:`HOTCOCO_MISSING`, or :data:`HOTCOCO_BROKEN` with the
    error. Decided by importing it, not by finding it (``find_spec``): an installed hotcoco whose native extension
    fails to load is found, yet the evaluator cannot use it, and the launch's note must say what the trial will do.
    Tried once per process (an import is cached by Python, a failed one is not)."""
    try:
        import hotcoco
    except ModuleNotFoundError as e:
        if e.name == "hotcoco":  # not there (or hidden: sys.modules["hotcoco"] = None)
            return None, HOTCOCO_MISSING
        return None, HOTCOCO_BROKEN.format(error=_one_line(e))  # it is there, but a module it needs is not
    except Exception as e:  # noqa: BLE001 - native code that fails to load raises ImportError, OSError or worse
        return None, HOTCOCO_BROKEN.format(error=_one_line(e))
    return hotcoco, ""


def _one_line(error: BaseException) -> str:
    """``Type: message``, its first line and at most 200 characters: the reason goes in one line of the launch."""
    text = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    return text if len(text) <= 200 else text[:199] + "…"
