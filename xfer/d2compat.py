"""Run detectron2 v0.6's pure-Python sources on current NumPy, Pillow and torch, without its C++ ops.

On machines without a CUDA toolchain detectron2 v0.6 is installed from the ``pb1-detectron2`` sdist
(``scripts/install_detectron2.py``), which has no compiled ``detectron2._C``. v0.6 also predates
NumPy 1.24 and Pillow 10, which removed names it uses. Everything needed to bridge that lives here,
and it is active only for detectron2 0.6 without its compiled extension, i.e. the sdist route. (Current
detectron2 still reports ``__version__ == "0.6"``, so the missing ``_C`` is what tells the two apart: a
source build, current or v0.6, has it and is left untouched.)

- ``detectron2._C``: four v0.6 modules import it at module level (deform_conv, roi_align_rotated,
  rotated_boxes, fast_eval_api). A stand-in module lets them import; any use of a compiled op raises
  :class:`CompiledOpUnavailable` naming the op. Faster R-CNN C4 with VOC evaluation uses none of
  them (ROIAlign and NMS come from torchvision).
- NumPy aliases ``np.bool``, ``np.int``, ``np.float``, ``np.object``, ``np.str`` (used by v0.6's
  VOC loader and evaluator) are restored to the builtins they always meant, only where missing.
- ``PIL.Image.LINEAR`` (a default argument in v0.6's ``ExtentTransform``) is restored as BILINEAR.

Call :func:`ensure` before importing any detectron2 submodule; it is idempotent.
"""

from __future__ import annotations

import importlib.util
import sys
import types

V06 = "0.6"
_NUMPY_ALIASES = {"bool": bool, "int": int, "float": float, "object": object, "str": str}


class CompiledOpUnavailable(RuntimeError):
    """A detectron2 op that needs the C++/CUDA extension was called on a build without it."""


class _MissingExtension(types.ModuleType):
    """Stand-in for ``detectron2._C``: importable, but every attribute is an op that refuses to run."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise CompiledOpUnavailable(
                f"detectron2._C.{name} is a compiled op, and this detectron2 (v0.6 Python sources) "
                "has no C++ extension. Faster R-CNN C4 with VOC evaluation does not need it; for "
                "other models build detectron2 from source (see README, 'GPU clusters')."
            )

        return unavailable


def _restore_numpy_aliases() -> None:
    import numpy as np

    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


def _restore_pillow_aliases() -> None:
    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR


def has_extension() -> bool:
    """Whether detectron2's compiled ops are installed (a source build) rather than our stand-in."""
    module = sys.modules.get("detectron2._C")
    if module is not None:
        return not isinstance(module, _MissingExtension)
    return importlib.util.find_spec("detectron2._C") is not None


def _install_extension_stand_in() -> None:
    if "detectron2._C" in sys.modules:
        return
    stand_in = _MissingExtension("detectron2._C", "stand-in: detectron2 built without C++ ops")
    sys.modules["detectron2._C"] = stand_in
    import detectron2

    detectron2._C = stand_in


def ensure() -> str:
    """Make the installed detectron2 usable here and return its version."""
    try:
        import detectron2
    except ImportError as e:
        raise ImportError(
            "detectron2 is not installed. Run `make setup` (CPU, detectron2 v0.6 Python sources) or "
            "build it from source on a GPU machine (see README, 'GPU clusters')."
        ) from e
    version = getattr(detectron2, "__version__", "unknown")
    if version == V06 and not has_extension():
        _restore_numpy_aliases()
        _restore_pillow_aliases()
        _install_extension_stand_in()
    return version
