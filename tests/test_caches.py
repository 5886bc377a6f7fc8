"""The caches never lie: a rewritten file is read again, a planted file never runs, a damaged entry is rebuilt.

Oracles: sha256 from hashlib over the files' bytes; the checkpoints' tensors read back with torch and the converted
weights with safetensors' own reader; the rewrite done by the real ``cp -p`` (same inode, same size, the old
modification time put back); a pickle whose unpickling would create a marker file, shown live by unpickling it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from omegaconf import OmegaConf

from tests.conftest import REPO
from tests.test_checkpoint import RunsCode
from tests.test_convert import randomised, read_back, saved
from xfer.store import digests
from xfer.store.files import write_text_atomic
from xfer.trial import converted


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def two() -> tuple[dict, dict]:
    """Two narrow torchvision ResNet-50s with different random values: checkpoints of equal size."""
    return tuple(randomised(torchvision.models.resnet50(weights=None, width_per_group=8), seed=s) for s in (1, 2))


def cp_p(src: Path, dst: Path) -> None:
    """The real ``cp -p`` onto an existing file, with ``src`` given ``dst``'s times first: ``dst`` keeps its
    inode, size and modification time, and holds ``src``'s bytes."""
    before = dst.stat()
    assert src.stat().st_size == before.st_size  # the case a (path, size, mtime) key cannot see
    os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns))
    subprocess.run(["cp", "-p", str(src), str(dst)], check=True)
    after = dst.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns  # the kernel's: set by the write, never by cp


def fresh_process_sha256(path: Path, store: Path) -> str:
    code = "import sys; from pathlib import Path; from xfer.store import digests; " \
           "print(digests.file_sha256(Path(sys.argv[1]), Path(sys.argv[2])))"  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, str(path), str(store)], capture_output=True, text=True,
                          check=True, env=env).stdout.strip()  # fmt: skip


def test_a_checkpoint_rewritten_at_the_same_size_and_mtime_is_hashed_and_converted_anew(tmp_path, two):
    """``cp -p``, ``rsync -t`` and ``tar`` put the old modification time back: the digest (in this process and
    in the on-disk store) and the conversion keyed by it must follow the new content, or the old weights would
    train under the new file's name."""
    first, second = two
    ckpt = saved(tmp_path, first, "moco")  # moco.pth
    other = tmp_path / "other" / "moco.pth"
    other.parent.mkdir()
    saved(other.parent, second, "moco")
    store, cache = tmp_path / "digests", tmp_path / "converted"
    assert digests.file_sha256(ckpt, store) == sha(ckpt) == fresh_process_sha256(ckpt, store)
    old_weights, _ = converted.cached(ckpt, "auto", cache, digests=store)
    np.testing.assert_array_equal(read_back(old_weights)["stem.conv1.weight"], first["conv1.weight"].numpy())

    old = sha(ckpt)
    cp_p(other, ckpt)
    new = sha(other)
    assert sha(ckpt) == new != old
    assert digests.file_sha256(ckpt) == new  # this process's memo
    assert digests.file_sha256(ckpt, store) == new  # and the store, read by this process ...
    assert fresh_process_sha256(ckpt, store) == new  # ... and by another one
    new_weights, report = converted.cached(ckpt, "auto", cache, digests=store)
    assert new_weights != old_weights and report.converted == 265
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]  # the new content, read by torch
    model = read_back(new_weights)
    for d2, key in (("stem.conv1.weight", "conv1.weight"), ("res5.2.conv3.weight", "layer4.2.conv3.weight"),
                    ("res3.0.shortcut.norm.running_var", "layer2.0.downsample.1.running_var")):  # fmt: skip
        np.testing.assert_array_equal(model[d2], state[f"module.encoder_q.{key}"].numpy(), err_msg=d2)
        assert not np.array_equal(model[d2], first[key].numpy())


def test_the_trial_job_hashes_its_weights_itself(tmp_path):
    """The launcher plans with the kept digest; the job reads the file (``cached=False``), so an entry that
    lies (planted here) cannot make it train other weights than it was planned for."""
    from xfer.store import identity
    from xfer.trial import runner

    ckpt, cache = tmp_path / "w.pth", tmp_path / "cache"
    ckpt.write_bytes(b"weights" * 100)
    cfg = OmegaConf.create({"pretrain": {"weights": str(ckpt)}, "paths": {"cache": str(cache)}})
    assert runner.weights_sha256(cfg) == sha(ckpt)
    (entry,) = (cache / identity.DIGESTS).iterdir()
    entry.write_text(entry.read_text().replace(sha(ckpt), "0" * 64))
    digests._MEMO.clear()  # as in another process: only the store remembers
    assert runner.weights_sha256(cfg) == "0" * 64  # the store is read ...
    assert runner.weights_sha256(cfg, cached=False) == sha(ckpt)  # ... but not by the job


def test_a_pickle_planted_in_the_conversion_cache_never_runs_and_is_rebuilt(tmp_path, two, caplog):
    """outputs/_cache/converted/ has predictable names. A pickle put under the name the cache uses (its report
    beside it left sound) is never unpickled: the entry is found damaged and converted again, the trial's
    loader refuses it outright, and the old ``.pkl`` name is never read."""
    from tests.test_recipe import composed
    from xfer import d2compat
    from xfer.trial import checkpoint, engine, recipe

    first, _ = two
    marker = tmp_path / "code-ran"
    src, cache = saved(tmp_path, first, "torchvision"), tmp_path / "converted"
    weights, report = converted.cached(src, "auto", cache)
    evil = pickle.dumps({"model": {"stem.conv1.weight": np.zeros(1)}, "__author__": "x", "hook": RunsCode(marker)})
    for planted in (weights, weights.with_suffix(".pkl")):
        planted.write_bytes(evil)

    d2compat.ensure()
    from detectron2.modeling import build_model

    widths = ("+d2.MODEL.RESNETS.STEM_OUT_CHANNELS=64", "+d2.MODEL.RESNETS.RES2_OUT_CHANNELS=256")
    cfg = recipe.build(composed("benchmark=smoke", "pretrain=custom", *widths), weights, tmp_path, "cpu")
    model = build_model(cfg)
    with pytest.raises(checkpoint.CheckpointError, match="not a readable safetensors file"):
        engine.Checkpointer(model).load(str(weights))  # replaced after the cache's check: refused, not run
    with caplog.at_level(logging.INFO, logger="xfer"):
        again, rebuilt = converted.cached(src, "auto", cache)
    assert again == weights and rebuilt == report
    (line,) = [r for r in caplog.records if r.name.startswith("xfer")]
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert f"{weights.name} is not a readable safetensors file" in line.getMessage()
    assert f"converting {src} again" in line.getMessage()
    engine.Checkpointer(model).load(str(weights))
    assert engine.verify_loaded(model, str(weights)) == 265
    torch.testing.assert_close(model.state_dict()["backbone.stem.conv1.weight"], first["conv1.weight"], rtol=0, atol=0)
    assert not marker.exists()
    pickle.loads(evil)  # the oracle: the planted payload was live
    assert marker.exists()


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage,said", [
    (lambda w: truncate(w.with_suffix(".json")), "its report {json} is unreadable (JSONDecodeError"),
    (lambda w: w.with_suffix(".json").write_text('{"layout": "moco"}'), "its report {json} is unreadable (KeyError: 'widths')"),
    (lambda w: w.with_suffix(".json").unlink(), "{weights} has no report {json}"),
    (truncate, "{weights} is not a readable safetensors file"),
    (lambda w: w.unlink(), "{weights}, which its report {json} describes, is missing"),
])  # fmt: skip
def test_a_damaged_cache_entry_is_rebuilt_with_one_line(tmp_path, two, caplog, damage, said):
    src, cache = saved(tmp_path, two[0], "moco"), tmp_path / "converted"
    weights, report = converted.cached(src, "auto", cache)
    report_text, weights_bytes = weights.with_suffix(".json").read_text(), weights.read_bytes()
    damage(weights)
    with caplog.at_level(logging.INFO, logger="xfer"):
        assert converted.cached(src, "auto", cache) == (weights, report)
    (line,) = [r for r in caplog.records if r.name.startswith("xfer")]
    assert said.format(json=weights.with_suffix(".json").name, weights=weights.name) in line.getMessage()
    assert line.exc_info is None and "Traceback" not in caplog.text
    assert weights.with_suffix(".json").read_text() == report_text and weights.read_bytes() == weights_bytes
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="xfer"):
        assert converted.cached(src, "auto", cache) == (weights, report)  # sound again: used, nothing said
    assert not [r for r in caplog.records if r.name.startswith("xfer")]


def test_coco_checks_follow_a_rewritten_json_and_redo_a_damaged_entry(tmp_path):
    from xfer.benchmarks import coco

    root, cache = tmp_path / "data", tmp_path / "cache"
    (root / "coco" / "val2017").mkdir(parents=True)
    (root / "coco" / "annotations").mkdir()
    (root / "coco" / "val2017" / "a.jpg").write_bytes(b"")
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4, "segmentation": None}
    good = {"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}], "annotations": [ann],
            "categories": [{"id": 1, "name": "x"}]}  # fmt: skip
    bad = {**good, "annotations": [{**ann, "image_id": 7}]}
    texts = [json.dumps(good), json.dumps(bad)]
    texts = [t.ljust(max(map(len, texts))) for t in texts]  # same size: JSON allows trailing blanks
    json_file = root / "coco" / "annotations" / "instances_val2017.json"
    json_file.write_text(texts[0])
    assert coco.problems(root, ["coco_2017_val"], 1, cache) == []
    rewritten = tmp_path / "bad.json"
    rewritten.write_text(texts[1])
    cp_p(rewritten, json_file)
    found = coco.problems(root, ["coco_2017_val"], 1, cache)
    assert len(found) == 1 and "names image_id 7, which is not in images" in found[0]
    for kept in (cache / "coco_checks").iterdir():
        kept.write_text(kept.read_text()[:9])  # damaged entries: the JSON is parsed again
    assert coco.problems(root, ["coco_2017_val"], 1, cache) == found


def test_an_atomic_write_that_fails_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "result.json"
    write_text_atomic(path, "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "new \udc80\n")  # not encodable: the write fails half way
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
