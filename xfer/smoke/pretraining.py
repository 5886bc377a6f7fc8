"""The smoke's pretraining: a short detection training of the narrow ResNet on other generated scenes.

Real pretrained checkpoints carry features that fine-tuning builds on; random ones do not, and a smoke
fine-tuned from random weights cannot show that the weights loaded at all. So the smoke pretrains its
narrow ResNet once, as its "ImageNet": the smoke's own detector, trained from random init on scenes
generated with another seed than the benchmark's (``pretraining`` in ``conf/benchmark/smoke.yaml``).
Its trunk (stem, res2-res4) and res5 ROI stage become a torchvision-named ResNet, which
``xfer.smoke.layouts`` saves in each method's file layout. It runs once per spec, in a process of its
own (detectron2 registers datasets and loggers globally), and is cached under the spec's hash; same
spec, same machine: same tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from filelock import FileLock

THREADS = 1  # of the pretraining process, whatever the caller's OMP_NUM_THREADS: the thread count changes the
# order of floating-point sums, so a fixed one keeps the cached weights (and every number after them) the same;
# one, because a second gains little on tensors this small, and spinning OpenMP threads of a
# process sharing its cores with another slowed it more than tenfold
_STAGE = re.compile(r"^res(\d)\.(\d+)\.(conv\d|shortcut)(\.norm)?\.(.+)$")


def torchvision_name(key: str) -> str | None:
    """detectron2 ResNet name (``stem.conv1.norm.weight``, ``res3.0.shortcut.weight``, ``res5.2.conv3.norm.bias``)
    -> torchvision's (``bn1.weight``, ``layer2.0.downsample.0.weight``, ``layer4.2.bn3.bias``); the inverse of
    ``xfer.trial.convert.rename``. None for what is not a ResNet tensor (the extra norm after res5, heads)."""
    if key.startswith("stem.conv1."):
        rest = key[len("stem.conv1."):]
        return "bn1." + rest[len("norm."):] if rest.startswith("norm.") else "conv1." + rest
    m = _STAGE.match(key)
    if not m:
        return None
    stage, block, layer, norm, leaf = m.groups()
    if layer == "shortcut":
        name = "downsample.1" if norm else "downsample.0"
    else:
        name = f"bn{layer[-1]}" if norm else layer
    return f"layer{int(stage) - 1}.{block}.{name}.{leaf}"


def trunk(model_state: Mapping[str, object]) -> dict:
    """The ResNet of a C4 detector's state dict (``backbone.*`` and ``roi_heads.res5.*``) under torchvision names."""
    out = {}
    for key, value in model_state.items():
        for prefix in ("backbone.", "roi_heads."):
            if key.startswith(prefix) and (name := torchvision_name(key[len(prefix):])) is not None:
                out[name] = value
    return out


def spec_hash(spec: Mapping) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def ensure(cache: Path, spec: Mapping) -> Path:
    """The pretrained ResNet of ``spec`` (a torch file of torchvision-named tensors), trained now if not cached.

    ``spec``: ``d2`` (the detectron2 config of the pretraining, as a plain dict merged onto detectron2's
    defaults), ``data`` (``images``, ``image_size``, ``seed`` of the generated scenes)."""
    cache = Path(cache)
    out = cache / f"resnet-{spec_hash(spec)}.pth"
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if out.exists():
            return out
        with tempfile.TemporaryDirectory(dir=cache, prefix="pretraining-") as work:
            spec_file = Path(work) / "spec.json"
            spec_file.write_text(json.dumps({**spec, "out": str(out), "work": work}))
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]),
                                                                           os.environ.get("PYTHONPATH")])),
                   "OMP_NUM_THREADS": str(THREADS)}  # fmt: skip
            proc = subprocess.run([sys.executable, "-m", "xfer.smoke.pretraining", str(spec_file)], env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True)  # fmt: skip
            if proc.returncode != 0 or not out.exists():
                tail = (proc.stdout + proc.stderr)[-2000:]
                raise RuntimeError(f"the smoke pretraining failed (exit {proc.returncode}):\n{tail}")
    return out


def _main(spec_file: Path) -> None:
    """In a process of its own: generate the scenes, train the detector, save its ResNet atomically."""
    from xfer import d2compat

    d2compat.ensure()
    import torch

    torch.set_num_threads(THREADS)
    from detectron2.config import CfgNode, get_cfg
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.logger import setup_logger

    from xfer.benchmarks import voc
    from xfer.smoke.scenes import ensure_dataset
    from xfer.trial import engine

    spec = json.loads(Path(spec_file).read_text())
    work = Path(spec["work"])
    gen = spec["data"]
    root = ensure_dataset(work / "datasets", {"voc_2007_trainval": gen["images"]}, tuple(gen["image_size"]),
                          gen["seed"])  # fmt: skip
    cfg = get_cfg()
    cfg.merge_from_other_cfg(CfgNode(spec["d2"]))
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("voc_2007_trainval",), ()
    cfg.MODEL.WEIGHTS, cfg.MODEL.DEVICE, cfg.OUTPUT_DIR = "", "cpu", str(work / "train")
    cfg.SOLVER.CHECKPOINT_PERIOD = cfg.SOLVER.MAX_ITER + 1  # nothing to resume: no periodic checkpoints
    cfg.SEED = int(gen["seed"])
    cfg.freeze()
    seed_all_rng(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR, name="detectron2", abbrev_name="d2")
    voc.register(root, cfg.DATASETS.TRAIN)
    trainer = engine.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    state = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
    tmp = Path(spec["out"] + ".partial")
    torch.save(trunk(state), tmp)
    tmp.replace(spec["out"])


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
