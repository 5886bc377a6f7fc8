"""The smoke's VOC-format dataset: scenes of coloured shapes a small CPU detector learns in minutes.

Each of the 20 VOC classes is one colour (5) and one filled shape (4: disc, square, triangle, cross), so no
two classes look alike and a narrow ResNet-C4 separates them after a few hundred iterations; a table of
zeros could not tell a working pipeline from a class index shifted between training and evaluation.
Objects are drawn on grey noise with jittered colours, sizes and positions, 1-4 per image, without
overlap; a few tiny ones are marked ``difficult`` (the VOC07 metric ignores them either way). Classes are
dealt from a shuffled deck, so every class has plain objects in every split and no AP is undefined.

Files are written as VOC's (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``, 1-based inclusive
pixel boxes), read by detectron2's own loader and evaluator. Generation is seeded and deterministic.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
from filelock import FileLock
from PIL import Image, ImageDraw

from xfer.benchmarks import voc
from xfer.benchmarks.voc import VOC_CLASSES

DONE = ".complete"  # written last, holding what the dataset was made from: another spec remakes it
VERSION = 2  # of the generator: a change of what it draws remakes every cached dataset
COLOURS = ((220, 50, 50), (50, 190, 60), (50, 80, 230), (235, 215, 50), (200, 60, 210))  # red green blue yellow magenta
SHAPES = ("disc", "square", "triangle", "cross")  # class i is COLOURS[i // 4] and SHAPES[i % 4]
MIN_SIDE = 24  # of a plain object; at 18 px a scratch detector told the shapes apart half as often in 200 iterations
DIFFICULT_SIDE = (8, 12)  # tiny objects, marked difficult as VOC marks hard ones
DIFFICULT_RATE = 0.06


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill: tuple) -> None:
    """Fill ``shape`` inside ``box`` = (x0, y0, x1, y1), inclusive pixel corners, touching all four sides."""
    x0, y0, x1, y1 = box
    if shape == "disc":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "cross":
        w, h = x1 - x0, y1 - y0
        draw.rectangle((x0, y0 + h // 3, x1, y1 - h // 3), fill=fill)
        draw.rectangle((x0 + w // 3, y0, x1 - w // 3, y1), fill=fill)
    else:
        raise ValueError(f"no shape {shape!r}")


def _overlaps(a: tuple[int, ...], b: tuple[int, ...], margin: int = 2) -> bool:
    return not (a[2] + margin < b[0] or b[2] + margin < a[0] or a[3] + margin < b[1] or b[3] + margin < a[1])


class Deck:
    """Classes dealt from reshuffled decks of all 20: balanced, and each seen once per 20 objects."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.cards = rng, []

    def deal(self) -> int:
        if not self.cards:
            self.cards = list(range(len(VOC_CLASSES)))
            self.rng.shuffle(self.cards)
        return self.cards.pop()


def scene(rng: random.Random, width: int, height: int, classes: list[int], plain: set[int]):
    """One image and its objects [(class, difficult, inclusive box)]. A class is only ever made difficult
    when ``plain`` (updated here) holds a plain object of it already."""
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, 14, (height, width, 3))
    img = Image.fromarray(np.clip(rng.randint(90, 160) + noise, 0, 255).astype(np.uint8))
    draw, objects = ImageDraw.Draw(img), []
    for cls in classes:
        difficult = cls in plain and rng.random() < DIFFICULT_RATE
        for _ in range(30):  # a free spot; a crowded image simply gets fewer objects
            side = rng.randint(*DIFFICULT_SIDE) if difficult else rng.randint(MIN_SIDE, min(width, height) // 2)
            w, h = side, min(height - 1, int(side * rng.uniform(0.8, 1.25)))
            x0, y0 = rng.randint(0, width - w - 1), rng.randint(0, height - h - 1)
            box = (x0, y0, x0 + w, y0 + h)
            if not any(_overlaps(box, o[2]) for o in objects):
                break
        else:
            continue
        colour = tuple(min(255, max(0, c + rng.randint(-20, 20))) for c in COLOURS[cls // len(SHAPES)])
        draw_shape(draw, SHAPES[cls % len(SHAPES)], box, colour)
        objects.append((cls, difficult, box))
        plain |= set() if difficult else {cls}
    return img, objects


def annotation(file_id: str, width: int, height: int, objects: list[tuple[int, bool, tuple]]) -> bytes:
    """VOC XML; boxes are 1-based and inclusive, as VOC's (detectron2's loader subtracts 1 from the minima)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = f"{file_id}.jpg"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for cls, difficult, (x0, y0, x1, y1) in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = VOC_CLASSES[cls]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(int(difficult))
        box = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (x0 + 1, y0 + 1, x1 + 1, y1 + 1), strict=True):
            ET.SubElement(box, tag).text = str(value)
    return ET.tostring(root)


def write_split(root: Path, year: str, split: str, count: int, size: tuple[int, int], rng: random.Random) -> None:
    """``count`` scenes of 1-4 objects as ``VOC<year>`` split ``split`` under ``root``."""
    voc = root / f"VOC{year}"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    deck, plain, ids = Deck(rng), set(), []
    for i in range(count):
        file_id = f"{split}_{i:06d}"
        w, h = rng.randint(*size), rng.randint(*size)
        img, objects = scene(rng, w, h, [deck.deal() for _ in range(rng.randint(1, 4))], plain)
        img.save(voc / "JPEGImages" / f"{file_id}.jpg", quality=92)
        (voc / "Annotations" / f"{file_id}.xml").write_bytes(annotation(file_id, w, h, objects))
        ids.append(file_id)
    with open(voc / "ImageSets/Main" / f"{split}.txt", "a") as f:
        f.write("".join(f"{i}\n" for i in ids))


def made_once(root: Path, spec: dict, write: Callable[[Path, random.Random], None]) -> Path:
    """``write(folder, rng)`` into a fresh folder that becomes ``root`` once complete, unless ``root`` holds a
    complete copy made from the same ``spec`` (kept in its DONE file; ``spec["seed"]`` seeds ``rng``)."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**spec, "version": VERSION}, sort_keys=True)
    with FileLock(str(root) + ".lock"):
        if (root / DONE).exists() and (root / DONE).read_text() == text:
            return root
        tmp = root.with_name(root.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        write(tmp, random.Random(spec["seed"]))
        (tmp / DONE).write_text(text)
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    return root


def ensure_dataset(root: Path, images: Mapping[str, int], size: tuple[int, int], seed: int = 0) -> Path:
    """Generate the VOC07+12-format scenes under ``root`` unless a complete copy is there."""

    def write(folder: Path, rng: random.Random) -> None:
        for name, count in images.items():
            year, split = voc.parse(name)
            write_split(folder, year, split, int(count), tuple(size), rng)

    return made_once(root, {"images": dict(images), "size": list(size), "seed": seed}, write)
