"""Drill findings about bringing one's own checkpoint, each against an oracle from outside the code under test.

- bfloat16 checkpoints (torch and safetensors) were a traceback (``Got unsupported ScalarType BFloat16``); they
  convert, each value as torch's own ``bfloat16 -> float32`` gives it (exact).
- A checkpoint with a NaN passed every check and failed after the trial started, as "not loaded"; it is refused
  at conversion, naming the tensor (NumPy's ``isfinite`` says which).
- A trusted plain pickle ran its code twice (torch's legacy reader unpickled it, failed, then pickle did again).
- The cause of a failed trial came out as "rank 0 exited with status 1" when the exception's name did not end
  in Error or Exception; it is the line Python's own ``traceback`` module prints.
- ``convert`` into a folder, or into a folder that does not exist, was a traceback.
- Models nested under names of their own (``{"student": ..., "teacher": ...}``) could not be reached by ``--prefix``.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.test_convert import tv  # noqa: F401  (the fixture: a narrow torchvision ResNet-50)
from xfer.launch.local import error_line
from xfer.trial import checkpoint, convert, converted

REPO = Path(__file__).resolve().parents[1]


def test_bfloat16_checkpoints_convert_to_torchs_own_float32_values(tmp_path, tv):  # noqa: F811
    bf16 = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in tv.items()}
    torch.save(bf16, tmp_path / "bf16.pth")
    save_file({k: v.contiguous() for k, v in bf16.items()}, str(tmp_path / "bf16.safetensors"))
    for src in ("bf16.pth", "bf16.safetensors"):
        converted.convert_file(tmp_path / src, tmp_path / f"{src}.out.safetensors")
        out = checkpoint.read_safetensors(tmp_path / f"{src}.out.safetensors")
        assert out["stem.conv1.weight"].dtype == np.float32
        assert np.array_equal(out["stem.conv1.weight"], bf16["conv1.weight"].float().numpy())  # torch's own upcast
        assert np.array_equal(out["res2.0.conv1.weight"], bf16["layer1.0.conv1.weight"].float().numpy())


def test_a_checkpoint_with_nan_is_refused_naming_the_tensor(tmp_path, tv):  # noqa: F811
    broken = dict(tv)
    broken["layer1.0.conv2.weight"] = tv["layer1.0.conv2.weight"].clone()
    broken["layer1.0.conv2.weight"].view(-1)[3] = float("nan")
    torch.save(broken, tmp_path / "nan.pth")
    with pytest.raises(convert.ConversionError, match=r"1 tensor\(s\) hold NaN or infinite values: "
                                                      r"res2\.0\.conv2\.weight;"):  # fmt: skip
        converted.convert_file(tmp_path / "nan.pth", tmp_path / "out.safetensors")
    assert not np.isfinite(broken["layer1.0.conv2.weight"].numpy()).all()  # the oracle agrees it is not finite
    assert not (tmp_path / "out.safetensors").exists()


class Counted:
    """Unpickled through :func:`count_and_give`, which appends a line to a file each time it runs."""

    def __init__(self, log: str, state: dict) -> None:
        self.log, self.state = log, state

    def __reduce__(self):
        return count_and_give, (self.log, self.state)


def count_and_give(log: str, state: dict) -> dict:
    with open(log, "a") as f:
        f.write("ran\n")
    return state


def test_a_trusted_plain_pickle_runs_its_code_once(tmp_path, tv):  # noqa: F811
    log = tmp_path / "runs.txt"
    with open(tmp_path / "counted.pkl", "wb") as f:
        pickle.dump(Counted(str(log), {k: v.numpy() for k, v in tv.items()}), f)
    state = checkpoint.load(tmp_path / "counted.pkl", trust=True)
    assert log.read_text() == "ran\n" and set(state) == set(tv)
    with pytest.raises(checkpoint.CheckpointError, match="refusing to unpickle it"):  # untrusted: never run
        checkpoint.load(tmp_path / "counted.pkl")
    assert log.read_text() == "ran\n"


def test_the_cause_of_a_failure_is_the_line_python_ends_its_traceback_with(tmp_path):
    """An exception whose name ends in neither Error nor Exception (xfer's own ``WeightsNotLoaded``), raised
    while handling another: the line is what Python's traceback module prints last."""
    script = ("import sys, traceback\nclass WeightsNotLoaded(RuntimeError):\n    pass\n"
              "try:\n    try:\n        {}['x']\n    except KeyError:\n"
              "        raise WeightsNotLoaded('1 pretrained tensors are not in the model: stem.conv1.weight')\n"
              "except WeightsNotLoaded as e:\n    traceback.print_exc()\n"
              "    print(traceback.format_exception_only(e)[-1].strip())\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    log = "[12/03 10:00:00 r0] xfer.trial.runner INFO: training\n" + proc.stderr
    assert error_line(log) == proc.stdout.strip() == "WeightsNotLoaded: 1 pretrained tensors are not in the model: " \
        "stem.conv1.weight"  # fmt: skip
    assert proc.stderr.count("Traceback (most recent call last):") == 2  # chained: the cause is the last one's


@pytest.mark.parametrize("out", ["afolder", "nofolder/w.safetensors"])
def test_convert_into_a_folder_or_a_missing_one_is_one_line(tmp_path, tv, out):  # noqa: F811
    torch.save(tv, tmp_path / "w.pth")
    (tmp_path / "afolder").mkdir()
    proc = subprocess.run([sys.executable, "-m", "xfer", "convert", str(tmp_path / "w.pth"), str(tmp_path / out)],
                          cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {tmp_path / out} ") and \
        proc.stderr.count("\n") == 1, proc.stderr  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afolder", "w.pth"] and not any((tmp_path / "afolder").iterdir())


@pytest.mark.parametrize("given,says", [("~/ckpt/mine.pth", "'~' is not expanded here (neither the shell nor Hydra "
                                         "expands it after '='); write the full path, e.g. "
                                         "pretrain.weights=$HOME/ckpt/mine.pth"),
                                        ("", "pretrain.weights is empty. Pass pretrain.weights=/path/to/checkpoint.")])
def test_a_weights_path_with_tilde_or_empty_is_named_as_such(tmp_path, monkeypatch, given, says):
    """Drill: ``'~/...'`` read as ``<cwd>/~/...`` "not found", and an empty path as "<cwd> is a folder". Hydra
    composes the value as given (the oracle: the composed config's own ``pretrain.weights``)."""
    from hydra import compose, initialize_config_dir

    from xfer.trial import checks

    monkeypatch.chdir(tmp_path)
    (tmp_path / "~" / "ckpt").mkdir(parents=True)  # a folder named ~ here must not be taken for $HOME
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["benchmark=smoke_fast", "pretrain=custom",
                                                        f"pretrain.weights='{given}'"])  # fmt: skip
    assert cfg.pretrain.weights == given
    assert checks._weights_problem(cfg).endswith(says)


def test_a_model_nested_under_a_name_of_its_own_is_reached_by_prefix(tmp_path, tv):  # noqa: F811
    """Drill: ``{"epoch": 3, "student": <ResNet>, "teacher": <ResNet>}`` (two models under names of their own, as
    self-distillation checkpoints keep them) could not be converted at all: ``--prefix student.`` found nothing.
    Nested models now read as dotted keys: each prefix converts its own model, as torchvision's names give it,
    the other listed as dropped; without a prefix, the refusal names the dotted keys to choose from."""
    teacher = {k: v * 0.5 if v.is_floating_point() else v for k, v in tv.items()}
    torch.save({"epoch": 3, "student": tv, "teacher": teacher}, tmp_path / "nested.pth")
    for prefix, model in (("student.", tv), ("teacher.", teacher)):
        report = converted.convert_file(tmp_path / "nested.pth", tmp_path / f"{prefix}safetensors", prefix=prefix)
        out = checkpoint.read_safetensors(tmp_path / f"{prefix}safetensors")
        assert report.layout == "torchvision" and report.prefix == prefix
        assert np.array_equal(out["stem.conv1.weight"], model["conv1.weight"].numpy())
        assert np.array_equal(out["res5.2.conv3.weight"], model["layer4.2.conv3.weight"].numpy())
        other = "teacher" if prefix == "student." else "student"
        assert {f"{other}.{m}" for m in ("conv1", "bn1", "layer1", "layer4")} | {"epoch"} <= set(report.dropped)
    with pytest.raises(convert.ConversionError, match=r"cannot tell the layout from the keys \(first ones: \['epoch', "
                                                      r"'student\.conv1\.weight'"):  # fmt: skip
        converted.convert_file(tmp_path / "nested.pth", tmp_path / "auto.safetensors")
