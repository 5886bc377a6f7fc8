"""The optimizer's per-parameter learning rate and weight decay, as each detectron2 version behind a published row
built them, against what our recipes give on the installed detectron2 (issue 20, item 2).

The oracles are detectron2's ``build_optimizer`` rules written out from its source, not from our code:

- "elif" (v0.1 ... v0.3, and facebookresearch/detectron2@3e71a2711bec, the commit the seed's DenseCL README pins
  for its VOC numbers; ``detectron2/solver/build.py`` there): a parameter of a norm layer gets
  ``WEIGHT_DECAY_NORM``; else a ``bias`` gets ``BASE_LR * BIAS_LR_FACTOR`` and ``WEIGHT_DECAY_BIAS``; else
  ``BASE_LR`` and ``WEIGHT_DECAY``. ``WEIGHT_DECAY_BIAS`` defaults to ``WEIGHT_DECAY`` (``config/defaults.py``).
- "bias override" (commit a9f5d2e6, 2021-02-09, up to 2df9c7da, 2021-09-30: v0.4, v0.4.1, v0.5;
  ``get_default_optimizer_params``): defaults ``BASE_LR``/``WEIGHT_DECAY``; a norm layer's parameters get
  ``WEIGHT_DECAY_NORM``; then every ``bias`` gets the bias overrides (``WEIGHT_DECAY_BIAS``, which still
  defaulted to ``WEIGHT_DECAY``, and the lr only when ``BIAS_LR_FACTOR`` != 1), norm layers' biases included.
  RegionCL's COCO logs ran v0.5 (their ``detectron2 version`` line).

From v0.6 on ``WEIGHT_DECAY_BIAS`` defaults to None (2df9c7da): no bias override, the "elif" groups again.
"""

from __future__ import annotations

import pytest
import torch

from tests.test_recipe import d2
from xfer import d2compat

pytestmark = pytest.mark.launch  # builds full-size models: seconds each

NORMS = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm, torch.nn.modules.instancenorm._InstanceNorm,
         torch.nn.LayerNorm, torch.nn.LocalResponseNorm)  # detectron2's norm_module_types, SyncBatchNorm included  # fmt: skip
RECIPES = {  # benchmark -> the pretrain whose published rows it is compared with, and its norm biases (issue 20)
    "coco_c4_1x": ("regioncl_m", 54),
    "coco_fpn_1x": ("regioncl_m", 61),
}


def trainable(model):
    """(module, parameter name, parameter) of every trainable parameter, each once, in detectron2's order."""
    seen = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                yield module, name, p


def elif_rule(cfg, module, name) -> tuple[float, float]:
    s = cfg.SOLVER
    bias_wd = s.WEIGHT_DECAY if s.WEIGHT_DECAY_BIAS is None else s.WEIGHT_DECAY_BIAS
    if isinstance(module, NORMS):
        return s.BASE_LR, s.WEIGHT_DECAY_NORM
    if name == "bias":
        return s.BASE_LR * s.BIAS_LR_FACTOR, bias_wd
    return s.BASE_LR, s.WEIGHT_DECAY


def bias_override_rule(cfg, module, name) -> tuple[float, float]:
    s = cfg.SOLVER
    lr, wd = s.BASE_LR, s.WEIGHT_DECAY_NORM if isinstance(module, NORMS) else s.WEIGHT_DECAY
    if name == "bias":
        wd = s.WEIGHT_DECAY if s.WEIGHT_DECAY_BIAS is None else s.WEIGHT_DECAY_BIAS  # v0.5's default: WEIGHT_DECAY
        lr = s.BASE_LR * s.BIAS_LR_FACTOR if s.BIAS_LR_FACTOR != 1.0 else lr
    return lr, wd


def groups(*overrides: str):
    """(model, cfg, {parameter: (lr, weight decay)}) from the installed detectron2's build_optimizer."""
    d2compat.ensure()
    from detectron2.modeling import build_model
    from detectron2.solver import build_optimizer

    from xfer.trial import engine  # noqa: F401  registers the recipes' ROI head

    cfg = d2(*overrides)
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    built = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    return model, cfg, built


@pytest.mark.parametrize("benchmark", sorted(RECIPES))
def test_our_recipes_give_the_groups_of_detectron2_before_v04_and_the_opt_in_gives_v05s(benchmark):
    pretrain, norm_biases = RECIPES[benchmark]
    model, cfg, ours = groups(f"benchmark={benchmark}", f"pretrain={pretrain}")
    params = list(trainable(model))
    assert set(ours) == {id(p) for _, _, p in params}  # the optimizer holds every trainable parameter once
    assert {id(p): elif_rule(cfg, m, n) for m, n, p in params} == ours
    differ = [(m, n) for m, n, _ in params if elif_rule(cfg, m, n) != bias_override_rule(cfg, m, n)]
    assert len(differ) == norm_biases and all(n == "bias" and isinstance(m, NORMS) for m, n in differ)
    # the opt-in the published rows' caveat names: v0.5's groups on this detectron2
    model, cfg, opted = groups(f"benchmark={benchmark}", f"pretrain={pretrain}", "+d2.SOLVER.WEIGHT_DECAY_BIAS=0.0001")
    assert {id(p): bias_override_rule(cfg, m, n) for m, n, p in trainable(model)} == opted


def test_the_voc_recipe_gives_the_groups_of_the_commit_the_seed_pins():
    """The seed's VOC numbers came from detectron2@3e71a2711bec (2021-01-10, the "elif" rule): its SyncBN biases
    (res5's and the extra norm's in the ROI head included) get WEIGHT_DECAY_NORM, 0."""
    model, cfg, ours = groups("benchmark=voc0712_c4_24k", "pretrain=densecl")
    params = list(trainable(model))
    assert {id(p): elif_rule(cfg, m, n) for m, n, p in params} == ours
    assert sum(isinstance(m, NORMS) and n == "bias" and ours[id(p)][1] == 0.0 for m, n, p in params) > 0
