"""Tiny generated inputs for the smoke benchmark: a VOC-format dataset and pretrained checkpoints.

The smoke sweep must exercise the real pipeline on a CPU without downloads: detectron2's VOC loader
and evaluator read the same files as for real VOC, and every pretrain's checkpoint comes in its
method's native layout (so conversion is exercised too). Everything is deterministic, generated once
into the cache and marked complete only after it is fully written. torch is imported only to make
weights: a launcher finding them made already need not pay its start-up (see ``xfer.devices``).
"""

from __future__ import annotations

import pickle
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree import ElementTree as ET

from filelock import FileLock
from PIL import Image, ImageDraw

from xfer import data
from xfer.data import VOC_CLASSES

if TYPE_CHECKING:
    import torch

BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
DONE = ".complete"


def _annotation(file_id: str, width: int, height: int, objects: list[tuple[str, int, tuple]]) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = f"{file_id}.jpg"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for cls, difficult, (x0, y0, x1, y1) in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = cls
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(difficult)
        box = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (x0, y0, x1, y1), strict=True):
            ET.SubElement(box, tag).text = str(value)
    return ET.tostring(root)


def _write_split(root: Path, year: str, split: str, count: int, size: tuple[int, int], rng: random.Random) -> None:
    """``count`` images with 2-3 coloured boxes each; classes cycle, and an object is marked difficult only
    when its class already has a plain one in the split (VOC's AP is undefined for a class without)."""
    voc = root / f"VOC{year}"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    ids, next_class, plain = [], 0, set()
    for i in range(count):
        file_id = f"{split}_{i:06d}"
        w, h = rng.randint(*size), rng.randint(*size)
        img = Image.new("RGB", (w, h), tuple(rng.randint(0, 80) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        objects = []
        for k in range(rng.randint(2, 3)):
            bw, bh = rng.randint(w // 5, w // 2), rng.randint(h // 5, h // 2)
            x0, y0 = rng.randint(1, w - bw - 1), rng.randint(1, h - bh - 1)
            cls = next_class % len(VOC_CLASSES)
            next_class += 1
            draw.rectangle((x0, y0, x0 + bw, y0 + bh), fill=(40 + 10 * cls, 255 - 10 * cls, 120))
            difficult = k == 2 and cls in plain
            plain |= set() if difficult else {cls}
            objects.append((VOC_CLASSES[cls], int(difficult), (x0, y0, x0 + bw, y0 + bh)))
        img.save(voc / "JPEGImages" / f"{file_id}.jpg", quality=90)
        (voc / "Annotations" / f"{file_id}.xml").write_bytes(_annotation(file_id, w, h, objects))
        ids.append(file_id)
    with open(voc / "ImageSets/Main" / f"{split}.txt", "a") as f:
        f.write("".join(f"{i}\n" for i in ids))


def ensure_dataset(root: Path, images: Mapping[str, int], size: tuple[int, int], seed: int = 0) -> Path:
    """Generate the tiny VOC07+12 under ``root`` unless a complete copy is there."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if (root / DONE).exists():
            return root
        tmp = root.with_name(root.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        rng = random.Random(seed)
        for name, count in images.items():
            year, split = data.parse(name)
            _write_split(tmp, year, split, int(count), tuple(size), rng)
        (tmp / DONE).touch()
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    return root


def torchvision_resnet(depth: int, stem: int, res2_out: int, width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of a bottleneck ResNet under torchvision's names, with chosen widths."""
    import torch

    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        state[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5

    def bn(name: str, c: int) -> None:
        state.update({f"{name}.weight": torch.ones(c), f"{name}.bias": torch.zeros(c)})
        state.update({f"{name}.running_mean": torch.zeros(c), f"{name}.running_var": torch.ones(c)})
        state[f"{name}.num_batches_tracked"] = torch.tensor(0)

    conv("conv1", stem, 3, 7)
    bn("bn1", stem)
    cin = stem
    for i, n in enumerate(BLOCKS[depth]):
        planes, out = width * 2**i, res2_out * 2**i
        for j in range(n):
            p = f"layer{i + 1}.{j}"
            conv(f"{p}.conv1", planes, cin, 1), bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3), bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", out, planes, 1), bn(f"{p}.bn3", out)
            if j == 0:
                conv(f"{p}.downsample.0", out, cin, 1), bn(f"{p}.downsample.1", out)
            cin = out
    state["fc.weight"] = torch.randn(1000, cin, generator=g) * 0.01
    state["fc.bias"] = torch.zeros(1000)
    return state


def msra_blobs(tv: Mapping[str, torch.Tensor]) -> dict:
    """The same ResNet under Caffe2 MSRA blob names (``res2_0_branch2a_w``, ``res_conv1_bn_s``)."""
    blobs = {}
    for key, value in tv.items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")) or key.startswith("fc."):
            continue
        parts = key.split(".")
        suffix = {"weight": "w", "bias": "b"}[parts[-1]]
        if parts[0] == "conv1":
            name = "conv1"
        elif parts[0] == "bn1":
            name, suffix = "res_conv1_bn", {"w": "s", "b": "b"}[suffix]
        else:
            stage, block, layer = int(parts[0][5:]) + 1, parts[1], parts[2]
            branch = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "bn1": "branch2a_bn",
                      "bn2": "branch2b_bn", "bn3": "branch2c_bn", "downsample": "branch1"}[layer]  # fmt: skip
            if layer == "downsample" and parts[3] == "1":
                branch += "_bn"
            if branch.endswith("_bn"):
                suffix = {"w": "s", "b": "b"}[suffix]
            name = f"res{stage}_{block}_{branch}"
        blobs[f"{name}_{suffix}"] = value.numpy()
    return {"blobs": blobs}


def wrap(tv: Mapping[str, torch.Tensor], layout: str) -> object:
    """Put a torchvision-named state dict into a codebase's native checkpoint container."""
    import torch

    backbone = {k: v for k, v in tv.items() if not k.startswith("fc.")}
    if layout == "moco":  # MoCo training checkpoint: query and key encoders, queue, optimizer
        state = {f"module.encoder_q.{k}": v for k, v in tv.items()}
        state.update({f"module.encoder_k.{k}": v for k, v in tv.items()})
        state["module.queue"] = torch.zeros(8, 4)
        return {"epoch": 200, "arch": "resnet50", "state_dict": state, "optimizer": {}}
    if layout == "openselfsup":  # OpenSelfSup training checkpoint
        state = {f"backbone.{k}": v for k, v in backbone.items()}
        state["neck.mlp.0.weight"] = torch.zeros(4, 4)
        return {"meta": {"epoch": 200}, "state_dict": state}
    if layout == "densecl_q":  # DenseCL training checkpoint as saved by its encoder_q Sequential
        state = {f"encoder_q.0.{k}": v for k, v in backbone.items()}
        state.update({f"encoder_k.0.{k}": v for k, v in backbone.items()})
        state.update({"encoder_q.1.mlp.0.weight": torch.zeros(4, 4), "queue": torch.zeros(4, 8)})
        return {"meta": {"epoch": 200}, "state_dict": state}
    if layout == "openselfsup_extracted":  # the extracted backbone: the seed script's input
        return {"state_dict": backbone}
    if layout == "torchvision":
        return dict(tv)
    if layout == "wrapped":  # a torchvision ResNet saved from a DataParallel, inside {"model": ...}
        return {"model": {f"module.{k}": v for k, v in tv.items()}, "epoch": 90}
    if layout == "vissl":
        trunk = {f"_feature_blocks.{k}": v for k, v in backbone.items()}
        heads = {"0.clf.0.weight": torch.zeros(4, 4)}
        return {"phase_idx": 10, "classy_state_dict": {"base_model": {"model": {"trunk": trunk, "heads": heads}}}}
    if layout == "detectron2":
        from xfer.convert import rename

        return {"model": {rename(k): v.numpy() for k, v in backbone.items()}, "__author__": "someone"}
    if layout == "msra":
        return msra_blobs(tv)
    raise ValueError(f"no smoke layout {layout!r}")


PICKLED = ("msra", "detectron2")  # layouts saved as plain pickles (.pkl), not torch files


def ensure_weights(path: Path, layout: str, depth: int, resnets: Mapping[str, int], seed: int = 0) -> Path:
    """Write a tiny checkpoint of ``layout`` at ``path`` unless it exists."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            return path
        import torch

        tv = torchvision_resnet(
            depth, resnets["STEM_OUT_CHANNELS"], resnets["RES2_OUT_CHANNELS"], resnets["WIDTH_PER_GROUP"], seed
        )
        tmp = path.with_name(path.name + ".partial")
        obj = wrap(tv, layout)
        if layout in PICKLED:
            with open(tmp, "wb") as f:
                pickle.dump(obj, f)
        else:
            torch.save(obj, tmp)
        tmp.replace(path)
    return path
