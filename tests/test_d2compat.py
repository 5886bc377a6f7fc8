"""The v0.6 compatibility layer: active only without the compiled extension, and loud when it matters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xfer import d2compat

d2compat.ensure()
pytestmark = pytest.mark.skipif(d2compat.has_extension(), reason="detectron2 built from source: no compat layer")


def test_compiled_ops_fail_with_a_message_naming_the_op():
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[5.0, 5.0, 2.0, 2.0, 0.0]])
    with pytest.raises(d2compat.CompiledOpUnavailable, match=r"detectron2\._C\.box_iou_rotated .* build detectron2"):
        pairwise_iou_rotated(boxes, boxes)


def test_names_removed_from_numpy_and_pillow_are_back_for_v06():
    from PIL import Image

    assert np.str is str and np.float is float and np.int is int and np.object is object
    assert Image.LINEAR == Image.BILINEAR
    from detectron2.evaluation import PascalVOCDetectionEvaluator  # imports fast_eval_api, which needs _C

    assert PascalVOCDetectionEvaluator


def test_ensure_is_idempotent():
    import sys

    stand_in = sys.modules["detectron2._C"]
    assert d2compat.ensure() == "0.6" and sys.modules["detectron2._C"] is stand_in
