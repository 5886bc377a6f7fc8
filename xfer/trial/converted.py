"""Converted weights on disk: the files a conversion (``xfer.trial.convert``) is written to, and the cache that
keeps one per checkpoint content, format and prefix.

The conversion cache (:func:`cached`) keeps safetensors files (``xfer.trial.checkpoint.SAFETENSORS``) with a
JSON report beside each, under names anyone can predict: a file there is data, never code (detectron2 would
unpickle a ``.pkl`` unrestricted), and an entry found damaged is converted again, saying so in one line.
``python -m xfer convert`` writes a detectron2 pickle instead when asked for a ``.pkl`` (for detectron2
elsewhere; the user's own file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np
from filelock import FileLock

from xfer.store.digests import file_sha256
from xfer.store.files import fsync_dir, write_text_atomic
from xfer.trial.checkpoint import SAFETENSORS, CheckpointError, load, safetensors_shapes
from xfer.trial.convert import BLOCKS, ConversionError, Report, Widths, convert, expected_shapes

log = logging.getLogger(__name__)


def author(report: Report) -> str:
    """Who wrote converted weights, as detectron2's model-zoo files say it (``__author__``), naming the layout they
    came from (``convert.origin_of`` reads it back: a conversion of this file keeps its input convention)."""
    return f"xfer ({report.native or report.layout})"


def write(model: Mapping[str, np.ndarray], report: Report, dst: Path) -> None:
    """The weights (safetensors for a ``.safetensors`` name, else detectron2's pickle), then the JSON report
    beside them; each written atomically and synced, so a report vouches for weights already whole on disk."""
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        if dst.suffix == SAFETENSORS:
            from safetensors.numpy import save

            # contiguous copies: safetensors writes an array's memory as it lies (a transposed one scrambled); the
            # bytes written by open(), so the file gets the umask's mode as every other output (save_file makes 0600:
            # others sharing the outputs folder could not read the cache)
            tmp.write_bytes(save({k: np.ascontiguousarray(v) for k, v in model.items()}, {"__author__": author(report)}))
        else:
            with open(tmp, "wb") as f:
                pickle.dump({"model": dict(model), "__author__": author(report), "matching_heuristics": True}, f,
                            protocol=4)  # fmt: skip
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        tmp.replace(dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dst.parent)
    write_text_atomic(dst.with_suffix(".json"), json.dumps(asdict(report), indent=1))


def convert_file(src: Path, dst: Path, layout: str = "auto", prefix: str | None = None, trust: bool = False,
                 depth: int | None = None) -> Report:  # fmt: skip
    """``src`` converted into ``dst`` (and its report beside it), or a ConversionError with nothing written: the
    input is never the output (nor its report), and a ResNet of another ``depth`` than asked is refused first."""
    src, dst = Path(src), Path(dst)
    for out in (dst, dst.with_suffix(".json")):
        if out.exists() and src.exists() and out.samefile(src):
            raise ConversionError(f"{out} is the input checkpoint itself: converting would overwrite it; give the "
                                  "output another name (e.g. with .safetensors)")  # fmt: skip
    try:
        obj = load(src, trust=trust)
    except CheckpointError as e:
        raise ConversionError(str(e)) from None
    try:
        model, report = convert(obj, layout, prefix)
    except ConversionError as e:
        raise ConversionError(f"{src}: {e}") from None
    if depth and report.depth != depth:
        raise ConversionError(f"{src} is a ResNet-{report.depth}, not ResNet-{depth}")
    write(model, report, dst)
    return report


def read_report(path: Path) -> Report:
    """The report written beside converted weights ``path``: OSError, ValueError or TypeError when there is
    no sound one (missing, truncated, other fields)."""
    raw = json.loads(Path(path).with_suffix(".json").read_text())
    report = Report(**{**raw, "widths": Widths(**raw["widths"])})
    if not isinstance(report.depth, int) or report.depth not in BLOCKS or not isinstance(report.dropped, dict):
        raise ValueError(f"depth {report.depth!r}, dropped {report.dropped!r}")
    if report.layout == "detectron2" and "origin" not in raw:  # written before the origin was read: read it now
        raise ValueError("no origin recorded for weights in detectron2 names")
    return report


def cache_damage(dst: Path) -> tuple[Report | None, str]:
    """(the report, "") of a sound cache entry: its report read whole, and weights whose header names exactly
    detectron2's ResNet of that depth and widths with their shapes; (None, why) of a damaged one; (None, "")
    of none. Only the header is read: a cheap check on every use of the entry."""
    report_file = dst.with_suffix(".json")
    if not dst.exists() and not report_file.exists():
        return None, ""
    if not report_file.exists():
        return None, f"{dst.name} has no report {report_file.name} (a conversion that did not finish)"
    try:
        report = read_report(dst)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        return None, f"its report {report_file.name} is unreadable ({type(e).__name__}: {e})"
    if not dst.exists():
        return None, f"{dst.name}, which its report {report_file.name} describes, is missing"
    try:
        shapes = safetensors_shapes(dst)
    except CheckpointError as e:
        return None, str(e).replace(f"{dst}: ", f"{dst.name} is ", 1)
    want = expected_shapes(report.depth, report.widths)
    if shapes != want or report.converted != len(want):
        return None, f"{dst.name} does not hold the {report.converted} tensors its report {report_file.name} lists"
    return report, ""


def cached(
    src: Path, layout: str, cache_dir: Path, prefix: str | None = None, trust: bool = False,
    digests: Path | None = None,
) -> tuple[Path, Report]:
    """detectron2 weights for ``src`` (a safetensors file), converted once per (file content, format, prefix, trust);
    file-locked. The content's sha256 is the trial identity's (``xfer.store.digests``): kept in the process,
    and on disk when ``digests`` is given, since a sweep asks for the same checkpoint once per trial. An entry
    found damaged (:func:`cache_damage`) is converted again, with one warning saying why."""
    src = Path(src)
    if not src.is_file():
        raise ConversionError(f"weights file not found: {src}")
    content = file_sha256(src, digests)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # a conversion that unpickled the file in full (trust) is kept apart: a launch without trust must not find it
    # and skip the refusal the file would get
    key = f"{layout}|{prefix}|{content}" + ("|trusted" if trust else "")
    dst = cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}{SAFETENSORS}"
    with FileLock(str(dst) + ".lock"):
        report, damage = cache_damage(dst)
        if report is not None:
            return dst, report
        if damage:
            log.warning("converted weights cache %s: %s; converting %s again", cache_dir, damage, src)
        return dst, convert_file(src, dst, layout, prefix, trust)
