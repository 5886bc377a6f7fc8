"""The smoke's checkpoints in each method's native file layout, from one torchvision-named ResNet.

Every pretrain of the smoke gets its codebase's own container and key names (MoCo's ``module.encoder_q.*``,
OpenSelfSup's ``backbone.*``, Caffe2 blobs, ...), so a smoke sweep exercises the same conversion as real
checkpoints. The tensors come from :func:`torchvision_resnet` (random, narrow) or from the smoke's cached
pretraining (``xfer.smoke.pretraining``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


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
        from xfer.trial.convert import rename

        return {"model": {rename(k): v.numpy() for k, v in backbone.items()}, "__author__": "someone"}
    if layout == "msra":
        return msra_blobs(tv)
    raise ValueError(f"no smoke layout {layout!r}")


PICKLED = ("msra", "detectron2")  # layouts saved as plain pickles (.pkl), not torch files
