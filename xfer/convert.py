"""Pretrained checkpoints -> detectron2's weight format, cached per input file.

Self-supervised codebases save ResNets under torchvision's parameter names, wrapped in their own
containers (MoCo: ``state_dict`` / ``module.encoder_q.*``; OpenSelfSup: ``state_dict`` / ``backbone.*``
or the extracted bare backbone; torchvision: a plain state dict). detectron2 names the same tensors
``stem.conv1.*`` / ``res2.0.conv1.norm.*`` ... The renaming is the one of the seed's
``convert-pretrain-to-detectron2.py``. MSRA Caffe2 pickles (``blobs``) and files already in detectron2
naming are passed on: detectron2 reads those itself.

Output: ``{"model": {name: np.ndarray}, "__author__": ..., "matching_heuristics": True}``, so detectron2
maps ``res5.*`` onto the C4 ROI head. A conversion happens once per input (keyed by its sha256) and is
shared by every trial that uses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from filelock import FileLock

LAYOUTS = ("auto", "moco", "openselfsup", "torchvision", "msra", "detectron2")
# Prefixes that wrap a torchvision-named ResNet, per layout, tried in order.
_PREFIXES = {
    "moco": ("module.encoder_q.", "encoder_q."),
    "openselfsup": ("backbone.", "module.backbone.", ""),
    "torchvision": ("module.", ""),
}
_DROPPED = re.compile(r"^(fc|head|neck|projector|predictor|queue)")


class ConversionError(ValueError):
    """The checkpoint cannot be turned into detectron2 weights; the message says why and what to do."""


@dataclass(frozen=True)
class Converted:
    """Where the detectron2-format weights are, and what was done to get them."""

    path: Path
    layout: str
    converted: int
    dropped: int


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unwrap(obj: object) -> Mapping[str, object]:
    """The innermost mapping of tensors: checkpoints nest it under ``state_dict`` or ``model``."""
    while isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        else:
            return obj
    raise ConversionError(f"expected a mapping of tensors, found {type(obj).__name__}")


def detect_layout(obj: Mapping[str, object]) -> str:
    """Guess the layout from the keys of a loaded checkpoint."""
    if "blobs" in obj:
        return "msra"
    keys = list(_unwrap(obj))
    if any(k.startswith(("module.encoder_q.", "encoder_q.")) for k in keys):
        return "moco"
    if any(k.startswith(("backbone.", "module.backbone.")) for k in keys):
        return "openselfsup"
    if any(k.startswith(("stem.", "backbone.bottom_up.", "res2.")) for k in keys):
        return "detectron2"
    if any(k.startswith(("conv1.", "module.conv1.")) for k in keys):
        return "openselfsup" if not any(k.startswith(("fc.", "module.fc.")) for k in keys) else "torchvision"
    raise ConversionError(f"cannot tell the checkpoint layout from its keys (first: {keys[:5]})")


def rename(key: str) -> str:
    """torchvision ResNet name -> detectron2 ResNet name (the seed script's mapping)."""
    if "layer" not in key:
        key = "stem." + key
    for t in (1, 2, 3, 4):
        key = key.replace(f"layer{t}", f"res{t + 1}")
    for t in (1, 2, 3):
        key = key.replace(f"bn{t}", f"conv{t}.norm")
    return key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


def to_detectron2(state: Mapping[str, object], layout: str) -> tuple[dict, int]:
    """Rename a torchvision-named ResNet found under the layout's prefix; return (model, dropped)."""
    for prefix in _PREFIXES[layout]:
        inner = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if any(k.startswith("conv1.") for k in inner):
            break
    else:
        raise ConversionError(f"no ResNet stem (conv1.*) under the {layout} prefixes {_PREFIXES[layout]}")
    model = {}
    for key, value in inner.items():
        if _DROPPED.match(key) or key.endswith("num_batches_tracked"):
            continue
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"{key} is a {type(value).__name__}, not a tensor")
        model[rename(key)] = value.detach().cpu().numpy()
    return model, len(state) - len(model)


def load(path: Path) -> Mapping[str, object]:
    """Read a checkpoint without running code from it (torch's weights-only unpickler)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    return obj


def convert_file(src: Path, dst: Path, layout: str = "auto") -> Converted:
    """Convert ``src`` to a detectron2 pickle at ``dst``, written atomically."""
    obj = load(src)
    found = detect_layout(obj)
    if layout not in ("auto", found):
        raise ConversionError(f"{src}: the config says format={layout}, but its keys look like {found}")
    state = _unwrap(obj)
    model, dropped = to_detectron2(state, found)
    payload = {"model": model, "__author__": f"xfer ({found})", "matching_heuristics": True}
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        pickle.dump(payload, f)
    tmp.replace(dst)
    return Converted(dst, found, len(model), dropped)


def cached(src: Path, layout: str, cache_dir: Path) -> Converted:
    """detectron2 weights for ``src``: converted once, then reused by every trial (file-locked)."""
    src = Path(src)
    if not src.is_file():
        raise ConversionError(f"weights file not found: {src}")
    if layout == "msra" or (layout in ("auto", "detectron2") and src.suffix == ".pkl"):
        return Converted(src, layout, 0, 0)  # detectron2 reads Caffe2 / its own pickles directly
    cache_dir.mkdir(parents=True, exist_ok=True)
    dst = cache_dir / f"{file_sha256(src)[:20]}.pkl"
    with FileLock(str(dst) + ".lock"):
        report = dst.with_suffix(".json")
        if dst.exists() and report.exists():
            done = Converted(**{**json.loads(report.read_text()), "path": dst})
            if layout not in ("auto", done.layout):
                raise ConversionError(f"{src}: the config says format={layout}, but its keys look like {done.layout}")
            return done
        done = convert_file(src, dst, layout)
        report.write_text(json.dumps({**asdict(done), "path": str(dst)}))
        return done
