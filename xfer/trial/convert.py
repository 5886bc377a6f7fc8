"""Pretrained checkpoints -> detectron2 weights, strictly: every ResNet tensor converted, or an error.

detectron2 loads weights by heuristics and only warns on missing keys, so a bad conversion would
silently train from random init and report a worse method. Here the layout is detected (or forced),
the ResNet under it is renamed to detectron2's names (the seed script's mapping for torchvision-named
weights), and the result must cover every parameter and BN buffer of detectron2's ResNet of the
detected depth and widths (stem, res2-res5; in C4, res5 sits in the ROI head), with matching shapes,
leaving no backbone key unconverted. Layouts:

- ``moco``: MoCo v1/v2 training checkpoints (``module.encoder_q.*``; ``encoder_k``, queue, fc dropped)
- ``openselfsup``: OpenSelfSup / MMSelfSup / mmpretrain (``backbone.*``, DenseCL's ``encoder_q.0.*``)
  and extracted bare backbones (the seed script's input)
- ``torchvision``: torchvision / timm ResNet state dicts (``fc`` dropped)
- ``vissl``: ``classy_state_dict`` ... ``trunk._feature_blocks.*``
- ``detectron2``: detectron2 names already (``stem.*``, ``backbone.*``, ``roi_heads.res5.*``)
- ``msra``: Caffe2 MSRA pickles (``blobs``, ``res2_0_branch2a_w``); BN statistics are folded into the
  affine scale and bias there, so running mean 0 and variance 1 are filled in, as detectron2 does.

What is converted is written, and cached, by ``xfer.trial.converted``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from xfer.trial.checkpoint import as_numpy

LAYOUTS = ("auto", "moco", "openselfsup", "torchvision", "vissl", "detectron2", "msra")
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
NORM = ("weight", "bias", "running_mean", "running_var")
_CONTAINERS = ("state_dict", "model", "module", "classy_state_dict", "base_model", "trunk", "blobs")
_PREFIXES = {
    "moco": ("module.encoder_q.", "encoder_q."),
    "openselfsup": ("backbone.", "module.backbone.", "encoder_q.0.", "module.encoder_q.0.", ""),
    "torchvision": ("", "module.", "model."),
    "vissl": ("_feature_blocks.", "trunk._feature_blocks.", "module._feature_blocks."),
}
_DETECT = (  # first match wins
    ("moco", re.compile(r"^(module\.)?encoder_q\.conv1\.weight$")),
    ("openselfsup", re.compile(r"^(module\.)?(backbone|encoder_q\.0)\.conv1\.weight$")),
    ("vissl", re.compile(r"^(trunk\.|module\.)?_feature_blocks\.conv1\.weight$")),
    ("detectron2", re.compile(r"^(backbone\.)?(bottom_up\.)?stem\.conv1\.weight$")),
    ("msra", re.compile(r"^res2_0_branch2a_w$")),
    ("torchvision", re.compile(r"^(module\.|model\.)?conv1\.weight$")),
)
_IGNORED = re.compile(r"(num_batches_tracked|_momentum)$")


class ConversionError(ValueError):
    """The checkpoint cannot become complete detectron2 ResNet weights; the message says why."""


@dataclass(frozen=True)
class Widths:
    """Channel widths of a bottleneck ResNet: the stem, res2's output, res2's bottleneck."""

    stem: int = 64
    res2_out: int = 256
    bottleneck: int = 64


@dataclass(frozen=True)
class Report:
    """What a conversion found and did."""

    layout: str
    prefix: str
    depth: int
    widths: Widths
    converted: int
    dropped: dict[str, int]
    origin: str | None = None  # detectron2 names: the layout they were converted from, where the file says (author)

    @property
    def native(self) -> str | None:
        """The layout the weights were trained in: the one read, or for detectron2 names the one they came from
        (None: the file does not say)."""
        return self.origin if self.layout == "detectron2" else self.layout

    @property
    def convention(self) -> str | None:
        """The input convention the weights were trained with (None: the file does not tell)."""
        return None if self.native in (None, "detectron2") else "bgr_msra" if self.native == "msra" else "rgb_torchvision"

    def summary(self) -> str:
        dropped = ", ".join(f"{k} ({n})" for k, n in sorted(self.dropped.items())) or "nothing"
        came = f", converted from {self.origin} by its author" if self.layout == "detectron2" and self.origin else ""
        return (
            f"layout {self.layout}{came} (prefix {self.prefix!r}), ResNet-{self.depth} {asdict(self.widths)}: "
            f"{self.converted} tensors converted; dropped {dropped}"
        )


def expected_shapes(depth: int, w: Widths) -> dict[str, tuple[int, ...]]:
    """Every parameter and BN buffer of detectron2's bottleneck ResNet (stem, res2-res5)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin, k, k)
        shapes.update({f"{name}.norm.{t}": (cout,) for t in NORM})

    conv("stem.conv1", w.stem, 3, 7)
    cin = w.stem
    for i, n in enumerate(BLOCKS[depth]):
        planes, out = w.bottleneck * 2**i, w.res2_out * 2**i
        for j in range(n):
            p = f"res{i + 2}.{j}"
            if j == 0:
                conv(f"{p}.shortcut", out, cin, 1)
            conv(f"{p}.conv1", planes, cin, 1)
            conv(f"{p}.conv2", planes, planes, 3)
            conv(f"{p}.conv3", out, planes, 1)
            cin = out
    return shapes


def rename(key: str) -> str:
    """torchvision ResNet name -> detectron2 ResNet name (the seed script's mapping)."""
    if "layer" not in key:
        key = "stem." + key
    for t in (1, 2, 3, 4):
        key = key.replace(f"layer{t}", f"res{t + 1}")
    for t in (1, 2, 3):
        key = key.replace(f"bn{t}", f"conv{t}.norm")
    return key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


def rename_msra(key: str) -> str | None:
    """Caffe2 MSRA blob name -> detectron2 name; None for blobs that are not ResNet trunk tensors."""
    norm = {"s": "norm.weight", "b": "norm.bias", "rm": "norm.running_mean", "riv": "norm.running_var"}
    if key == "conv1_w":
        return "stem.conv1.weight"
    if m := re.fullmatch(r"res_conv1_bn_(s|b|rm|riv)", key):
        return f"stem.conv1.{norm[m.group(1)]}"
    m = re.fullmatch(r"res(\d)_(\d+)_branch(1|2a|2b|2c)(_bn)?_(w|s|b|rm|riv)", key)
    if not m:
        return None
    stage, block, branch, bn, kind = m.groups()
    layer = {"1": "shortcut", "2a": "conv1", "2b": "conv2", "2c": "conv3"}[branch]
    return f"res{stage}.{block}.{layer}." + (norm[kind] if bn else "weight")


def _tensors(obj: object) -> Mapping[str, object]:
    """Descend through the containers checkpoints wrap their tensors in."""
    import torch  # loaded already by whoever read the checkpoint; imported here so the launcher needs none

    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor | np.ndarray) for v in obj.values()):
        inner = next((obj[k] for k in _CONTAINERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:  # models under names of their own ({"student": ..., "teacher": ...}): "student.conv1.weight"
            obj = _dotted(obj) if any(isinstance(v, Mapping) for v in obj.values()) else obj
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise ConversionError(f"no mapping of tensors found (top-level: {type(obj).__name__})")
    return obj


# Who wrote a file already in detectron2's names (its ``__author__``, as detectron2's model-zoo files have one), where
# that says which layout its weights came from: xfer's own conversions (``xfer (msra)``: converted.author), and the
# converters of detectron2 (tools/convert-torchvision-to-d2.py: "torchvision") and MoCo
# (detection/convert-pretrain-to-detectron2.py: "MOCO"), whose outputs their READMEs pair with RGB input.
_AUTHORS = {"torchvision": "torchvision", "MOCO": "moco"}


def origin_of(obj: object) -> str | None:
    """The layout a detectron2-named checkpoint was converted from, as its ``__author__`` says (None: unknown)."""
    author = obj.get("__author__") if isinstance(obj, Mapping) else None
    if not isinstance(author, str):
        return None
    mine = re.fullmatch(r"xfer \((\w+)\)", author)
    found = mine.group(1) if mine else _AUTHORS.get(author)
    return found if found in LAYOUTS and found not in ("auto", "detectron2") else None


def detect_layout(state: Mapping[str, object]) -> str:
    for layout, pattern in _DETECT:
        if any(pattern.match(k) for k in state):
            return layout
    raise ConversionError(
        f"cannot tell the layout from the keys (first ones: {list(state)[:6]}); pass --format (pretrain.format), or --prefix (pretrain.prefix) for other codebases"
    )


def _dotted(obj: Mapping, prefix: str = "") -> dict[str, object]:
    """Nested mappings as one, their keys joined by dots, so that ``--prefix student.`` reaches a nested model."""
    return {k: v for key, value in obj.items()
            for k, v in (_dotted(value, f"{prefix}{key}.") if isinstance(value, Mapping) else {f"{prefix}{key}": value}).items()}  # fmt: skip


def _as_array(key: str, value: object) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        return as_numpy(value)
    if isinstance(value, np.ndarray):
        return value
    raise ConversionError(f"{key} is a {type(value).__name__}, not a tensor")


def _group(key: str) -> str:
    """Name dropped keys by their first two components (``module.encoder_k``)."""
    return ".".join(key.split(".")[:2]) if "." in key else key


def _extract(state: Mapping[str, object], layout: str, prefix: str | None) -> tuple[str, dict, Counter]:
    """(prefix, detectron2-named arrays, dropped-key counts) for one layout."""
    dropped: Counter = Counter()
    model: dict[str, np.ndarray] = {}
    if layout == "msra":
        for key, value in state.items():
            if _IGNORED.search(key):
                continue
            name = rename_msra(key)
            if name is None:
                dropped[key.split("_")[0]] += 1
            else:
                model[name] = _as_array(key, value)
        for name in [k for k in model if k.endswith("norm.weight")]:  # statistics folded into the affine
            base = name[: -len("weight")]
            model.setdefault(base + "running_mean", np.zeros_like(model[name]))
            model.setdefault(base + "running_var", np.ones_like(model[name]))
        return "", model, dropped
    if layout == "detectron2":
        for key, value in state.items():
            name = re.sub(r"^(backbone\.)?(bottom_up\.)?|^roi_heads\.(?=res5\.)", "", key)
            if _IGNORED.search(name):
                continue
            if re.match(r"^(stem|res[2-5])\.", name):
                model[name] = _as_array(key, value)
            else:
                dropped[_group(key)] += 1
        return "", model, dropped
    prefixes = (prefix,) if prefix is not None else _PREFIXES[layout]
    for p in prefixes:
        if f"{p}conv1.weight" in state:
            break
    else:
        raise ConversionError(f"no ResNet (conv1.weight) under the {layout} prefixes {list(prefixes)}")
    for key, value in state.items():
        inner = key[len(p) :] if key.startswith(p) else None
        if _IGNORED.search(key):
            continue
        if inner is None or re.match(r"^(fc|head|neck|projector|predictor)\b", inner):
            dropped[_group(key) if inner is None else inner.split(".")[0]] += 1
            continue
        if not re.match(r"^(conv1|bn1|layer[1-4])\.", inner):
            if p == "":  # a bare state dict: other top-level keys are not the backbone's
                dropped[_group(key)] += 1
                continue
            raise ConversionError(f"{key}: under the backbone prefix {p!r} but not a ResNet tensor")
        model[rename(inner)] = _as_array(key, value)
    return p, model, dropped


def _depth(model: Mapping[str, np.ndarray]) -> int:
    """The smallest ResNet with at least the blocks present (absent ones are then reported missing)."""
    counts = [
        1 + max((int(k.split(".")[1]) for k in model if k.startswith(f"res{s}.")), default=-1) for s in (2, 3, 4, 5)
    ]
    for depth, blocks in sorted(BLOCKS.items()):
        if all(have <= want for have, want in zip(counts, blocks, strict=True)):
            return depth
    raise ConversionError(f"blocks per stage res2-res5 are {tuple(counts)}: not a ResNet-50/101/152 ({BLOCKS})")


def convert(obj: object, layout: str = "auto", prefix: str | None = None) -> tuple[dict[str, np.ndarray], Report]:
    """detectron2-named ResNet arrays from a loaded checkpoint, checked complete; and the report."""
    if layout not in LAYOUTS:
        raise ConversionError(f"format {layout!r} is not one of {', '.join(LAYOUTS)}")
    state = _tensors(obj)
    if prefix is not None:  # another codebase: torchvision names under an explicit prefix
        found = "torchvision" if layout == "auto" else layout
    else:
        found = detect_layout(state) if layout == "auto" else layout
    try:
        used, model, dropped = _extract(state, found, prefix)
        if not {"stem.conv1.weight", "res2.0.conv1.weight", "res2.0.conv3.weight"} <= set(model):
            raise ConversionError(f"no ResNet stem and res2 found ({len(model)} tensors)")
    except ConversionError as e:
        guess = next((lay for lay, pat in _DETECT if any(pat.match(k) for k in state)), "unknown")
        raise ConversionError(f"{e} (read as {found}; its keys look like {guess})") from None
    depth = _depth(model)
    widths = Widths(
        model["stem.conv1.weight"].shape[0],
        model["res2.0.conv3.weight"].shape[0],
        model["res2.0.conv1.weight"].shape[0],
    )
    expected = expected_shapes(depth, widths)
    missing = sorted(set(expected) - set(model))
    extra = sorted(set(model) - set(expected))
    shaped = [f"{k} {tuple(model[k].shape)} (want {expected[k]})" for k in sorted(set(model) & set(expected))
              if tuple(model[k].shape) != expected[k]]  # fmt: skip
    if missing or extra or shaped:
        parts = [f"{len(v)} {what}: {', '.join(v[:6])}{' ...' if len(v) > 6 else ''}"
                 for what, v in (("missing", missing), ("mis-shaped", shaped), ("unconverted", extra)) if v]  # fmt: skip
        raise ConversionError(f"read as {found}, ResNet-{depth}: incomplete weights; " + "; ".join(parts))
    broken = [k for k in sorted(model) if not np.isfinite(model[k]).all()]
    if broken:  # a diverged pretraining: detectron2 would train on, to a NaN loss or a table of zeros
        raise ConversionError(f"read as {found}, ResNet-{depth}: {len(broken)} tensor(s) hold NaN or infinite "
                              f"values: {', '.join(broken[:6])}{' ...' if len(broken) > 6 else ''}; the checkpoint "
                              "is of a diverged or damaged run: use an earlier one")  # fmt: skip
    origin = origin_of(obj) if found == "detectron2" else None
    return model, Report(found, used, depth, widths, len(model), dict(dropped), origin)
