"""Reading checkpoints never runs code from them, and unreadable files get a clear error."""

from __future__ import annotations

import argparse
import os
import pickle

import numpy as np
import pytest
import torch

from xfer.trial import checkpoint, convert, converted


class RunsCode:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickles_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "code-ran"
    pkl, pth = tmp_path / "evil.pkl", tmp_path / "evil.pth"
    pkl.write_bytes(pickle.dumps({"model": {"stem.conv1.weight": RunsCode(marker)}}))
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "meta": RunsCode(marker)}, pth)
    for path in (pkl, pth):
        with pytest.raises(
            checkpoint.CheckpointError, match=r"refusing to unpickle it: it asks for (posix|os)\.system"
        ):
            checkpoint.load(path)
        with pytest.raises(convert.ConversionError, match="--trust"):
            converted.convert_file(path, tmp_path / "out.pkl")
    assert not marker.exists()


def test_trust_unpickles_fully(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "trusted.pkl"
    path.write_bytes(pickle.dumps({"x": RunsCode(marker)}))
    checkpoint.load(path, trust=True)
    assert marker.exists()  # the opt-in really is full unpickling


def test_harmless_globals_real_checkpoints_carry_are_allowed(tmp_path):
    path = tmp_path / "ok.pth"
    meta = {"epoch": np.int64(200), "loss": np.float32(1.5), "hist": np.arange(3), "dtype": np.dtype("float16")}
    torch.save({"state_dict": {"conv1.weight": torch.ones(2)}, "meta": meta, "args": argparse.Namespace(lr=0.03)}, path)
    obj = checkpoint.load(path)
    assert obj["meta"]["epoch"] == 200 and obj["args"].lr == 0.03
    legacy = tmp_path / "legacy.pth.tar"  # the pre-1.6 format of old MoCo releases
    torch.save({"state_dict": {"a": torch.ones(1)}}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(checkpoint.load(legacy)["state_dict"]["a"], torch.ones(1))
    py2 = tmp_path / "R-50.pkl"  # protocol-2 pickle of NumPy arrays, as detectron2's MSRA files
    py2.write_bytes(pickle.dumps({"blobs": {"conv1_w": np.ones((2, 3), np.float32)}}, protocol=2))
    assert checkpoint.load(py2)["blobs"]["conv1_w"].shape == (2, 3)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "the file is empty"),
        (b"model weights, honest\n", "not a checkpoint"),
        (b"\x80\x04\x95", "not a checkpoint"),  # truncated pickle
    ],
)
def test_files_that_are_not_checkpoints(tmp_path, content, message):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(checkpoint.CheckpointError, match=message):
        checkpoint.load(path)


def test_truncated_torch_file(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save({"state_dict": {"conv1.weight": torch.randn(64, 3, 7, 7)}}, path)
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(checkpoint.CheckpointError, match="not a (readable PyTorch )?checkpoint"):
        checkpoint.load(path)


def test_a_trusted_conversion_does_not_make_the_file_trusted_for_a_launch_without_trust(tmp_path):
    """pretrain.trust=true converts a checkpoint that needs full unpickling (its payload runs, as asked); a later
    conversion of the same file without trust does not find that entry in the cache: it is refused as before."""
    from xfer.smoke import layouts

    marker = tmp_path / "code-ran"
    path = tmp_path / "needs-trust.pth"
    tensors = {k: torch.as_tensor(v) for k, v in layouts.torchvision_resnet(50, 16, 32, 8, 0).items()}
    torch.save({**tensors, "meta": RunsCode(marker)}, path)
    converted.cached(path, "torchvision", tmp_path / "cache", trust=True)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(convert.ConversionError, match="--trust"):
        converted.cached(path, "torchvision", tmp_path / "cache")
    assert not marker.exists()
