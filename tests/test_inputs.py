"""The real benchmark with nothing in place: one message per problem, nothing run or created."""

from __future__ import annotations

import pickle
import shlex
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import REPO, launch

pytestmark = pytest.mark.launch  # every test here runs launch.py


def test_missing_dataset_weights_and_gpus_are_reported_together(tmp_path):
    run = launch(
        "-m", "pretrain=densecl,regioncl", "seed=0-4", f"output_root={tmp_path}/out",
        f"paths.datasets={tmp_path}/nodata", f"paths.weights={tmp_path}/noweights",
    )  # fmt: skip
    assert run.returncode == 2, run.output[-3000:]
    err = run.stderr
    assert "nothing was run" in err
    for split in ("voc_2007_trainval", "voc_2012_trainval", "voc_2007_test"):
        assert err.count(f"dataset {split}: missing") == 1, err  # once, not once per trial
    assert f"{tmp_path}/nodata/VOC2007/ImageSets/Main/test.txt" in err and "DETECTRON2_DATASETS" in err
    assert f"weights not found at {tmp_path}/noweights/densecl_r50.pth" in err
    assert f"{tmp_path}/noweights/regioncl_d_r50.pth" in err and "pretrain.weights=" in err and "XFER_WEIGHTS" in err
    assert "torch.cuda.device_count() == 0" in err  # the suite hides any GPU (tests/conftest.py)
    written = [p.name for p in (tmp_path / "out").rglob("*") if p.is_file() and "_cache" not in p.parts]
    assert written in ([], ["multirun.yaml"]), written  # Hydra's sweep record at most (and caches); no trial folder


def test_custom_pretrain_without_weights_names_the_fix(tmp_path):
    run = launch("-m", "benchmark=smoke_fast", "pretrain=custom", "pretrain.name=mine", "benchmark.generate=false",
                 f"output_root={tmp_path}")  # fmt: skip
    assert run.returncode == 2
    assert "pretrain mine (r50): weights not found" in run.stderr and "pretrain.weights=" in run.stderr


def test_batch_that_the_process_count_cannot_divide_is_refused(tmp_path, smoke_fast_made):
    smoke_fast_made(tmp_path)
    run = launch("-m", "benchmark=smoke_fast", "cluster.devices=4", "cluster.gpus_per_trial=3", f"output_root={tmp_path}")
    assert run.returncode == 2
    assert "cluster.gpus_per_trial=3 cannot share the global batch 2 evenly" in run.stderr
    assert "use one of [1, 2]" in run.stderr
    assert not (tmp_path / "smoke_fast" / "r50_densecl").exists()  # nothing was started


def test_malformed_annotations_are_named_before_anything_runs(tmp_path):
    from xfer import smoke

    gen = yaml.safe_load((REPO / "conf/benchmark/smoke_fast.yaml").read_text())["smoke"]  # made as the launch would
    voc = smoke.ensure_dataset(tmp_path / "_cache/smoke_fast/datasets", gen["images"], tuple(gen["image_size"])) / "VOC2007"
    test, trainval = gen["images"]["voc_2007_test"], gen["images"]["voc_2007_trainval"]
    (voc / "Annotations/test_000001.xml").write_text("<annotation><size><width>")
    xml = voc / "Annotations/trainval_000002.xml"
    xml.write_text(xml.read_text().replace("<name>", "<name>x", 1))
    (voc / "JPEGImages/trainval_000003.jpg").unlink()
    run = launch("-m", "benchmark=smoke_fast", "seed=0,1", f"output_root={tmp_path}")
    assert run.returncode == 2, run.output[-3000:]
    err = run.stderr
    assert f"dataset voc_2007_test: 1 of {test} images" in err and "test_000001.xml: not well-formed XML" in err
    assert f"dataset voc_2007_trainval: 2 of {trainval} images" in err
    assert "trainval_000002.xml: object class 'x" in err and "not one of the 20 VOC classes" in err
    assert "trainval_000003.jpg missing" in err and "remove their ids from" in err
    assert "voc_2012_trainval" not in err
    assert not list(tmp_path.rglob("metrics.json"))


def _tiny(depth: int):
    from xfer import smoke

    return smoke.layouts.torchvision_resnet(depth, stem=16, res2_out=32, width=8)


@pytest.mark.parametrize(
    "make,args,message",
    [
        (lambda: _tiny(101), ["pretrain=custom", "backbone=r50"],
         "the weights are a ResNet-101, the backbone is ResNet-50; choose backbone=r101"),
        (lambda: _tiny(50), ["pretrain=custom", "input@pretrain.input=bgr_msra"],
         "torchvision weights are trained on rgb_torchvision input, but the pretrain's input is bgr_msra"),
        (lambda: _tiny(50), ["pretrain=supervised"],
         "no ResNet stem and res2 found (0 tensors) (read as msra; its keys look like torchvision)"),
        (lambda: {k: v for k, v in _tiny(50).items() if "layer3.2" not in k}, ["pretrain=custom"],
         "incomplete weights; 15 missing: res4.2.conv1.norm.bias"),
    ],
)  # fmt: skip
def test_weights_that_do_not_fit_the_config_are_refused_before_running(tmp_path, make, args, message):
    weights = tmp_path / "w.pth"
    torch.save(make(), weights)
    run = launch("-m", "benchmark=smoke_fast", *args, f"pretrain.weights={weights}", f"output_root={tmp_path}/out")
    assert run.returncode == 2, run.output[-3000:]
    assert message in run.stderr, run.stderr
    assert not list((tmp_path / "out").rglob("metrics.json"))


def test_msra_weights_converted_by_xfer_are_still_refused_on_rgb_input(tmp_path):
    """MSRA (Caffe2) weights are trained on BGR input; converted by ``python -m xfer convert`` first, they are in
    detectron2's names, and the author the file names (``xfer (msra)``) still tells the launch so."""
    from xfer.smoke import layouts
    from xfer.trial import converted

    src = tmp_path / "R-50.pkl"
    src.write_bytes(pickle.dumps(layouts.wrap(_tiny(50), "msra")))
    converted.convert_file(src, tmp_path / "r50_d2.pkl")
    args = ("benchmark=smoke_fast", "pretrain=custom", f"pretrain.weights={tmp_path / 'r50_d2.pkl'}", "seed=0",
            f"output_root={tmp_path}/out")  # fmt: skip
    run = launch(*args)
    assert run.returncode == 2, run.output[-3000:]
    assert ("msra weights (in detectron2 names) are trained on bgr_msra input, but the pretrain's input is "
            "rgb_torchvision; set input@pretrain.input=bgr_msra") in run.stderr, run.stderr  # fmt: skip
    assert launch(*args, "input@pretrain.input=bgr_msra", "plan=true").returncode == 0


class RunsCode:
    """Unpickling this runs ``touch MARKER``: an absolute path, whatever the directory the code runs in."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker.resolve())

    def __reduce__(self):
        import os

        return (os.system, (f"touch {shlex.quote(self.marker)}",))


@pytest.mark.parametrize("trust", [False, True])
def test_a_pickle_that_runs_code_is_refused_unless_trusted(tmp_path, trust):
    """The launch reads the checkpoint (in the launcher, cwd the repo); only pretrain.trust=true runs it."""
    marker = tmp_path / "code-ran"
    weights = tmp_path / "w.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "x": RunsCode(marker)}, weights)
    run = launch("-m", "benchmark=smoke_fast", "pretrain=custom", f"pretrain.weights={weights}", f"pretrain.trust={trust}",
                 f"output_root={tmp_path}/out")  # fmt: skip
    assert run.returncode == 2, run.output[-3000:]  # one conv1 tensor is no ResNet either way
    assert marker.exists() == trust, run.stderr  # the marker proves the payload runs when unpickled in full
    if not trust:
        assert "refusing to unpickle it: it asks for posix.system" in run.stderr, run.stderr
    assert not list((tmp_path / "out").rglob("metrics.json"))


def test_slurm_without_multirun_is_refused(tmp_path):
    run = launch("benchmark=smoke_fast", "cluster=slurm", f"output_root={tmp_path}")
    assert run.returncode == 2 and "cluster=slurm submits sweeps: add -m (one trial: -m seed=0)" in run.stderr
