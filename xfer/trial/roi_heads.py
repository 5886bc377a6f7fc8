"""The seed's ROI head, registered with detectron2 on import: res5 followed by one more norm layer.

The MoCo/DenseCL detection recipe (``ROI_HEADS.NAME: Res5ROIHeadsExtraNorm``) names it, so every process that
builds a trial's model imports this module first (``xfer.trial.engine`` does).
"""

from __future__ import annotations

from xfer import d2compat

d2compat.ensure()

from detectron2.layers import get_norm  # noqa: E402
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads  # noqa: E402


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """Res5 ROI head with an extra norm layer after res5, as in the MoCo paper's detection recipe."""

    @classmethod
    def _build_res5_block(cls, cfg):
        seq, out_channels = super()._build_res5_block(cfg)
        seq.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
        return seq, out_channels
