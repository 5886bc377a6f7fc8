"""Reading checkpoint files without running code from them.

A ``.pth`` is a pickle, and unpickling can execute arbitrary code; users bring checkpoints from many
places. xfer therefore reads PyTorch files with torch's weights-only unpickler and plain pickles
(detectron2 / Caffe2 ``.pkl``) with a restricted unpickler, both allowing only plain data: tensors,
NumPy arrays and scalars, containers, and ``argparse.Namespace`` (training scripts store their args).
Anything else is refused before it is constructed. ``trust=True`` lifts this for a file the user vouches
for, and says so loudly.

xfer's own converted weights (``xfer.trial.convert``) are safetensors files (:data:`SAFETENSORS`): a JSON
header and raw tensor bytes, a format with nothing in it that could run, whoever wrote the file.
"""

from __future__ import annotations

import argparse
import collections
import logging
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.dtypes")
_NUMPY_NAMES = {"_reconstruct", "scalar", "ndarray", "dtype"}


SAFETENSORS = ".safetensors"  # the suffix of safetensors files, read as such by :func:`load`


class CheckpointError(ValueError):
    """The file cannot be read as a checkpoint, or reading it would run code; the message says which."""


def _dtype_classes() -> list[type]:
    """NumPy's dtype classes (``numpy.dtypes.Float32DType``, ...), which torch's weights-only reader must
    be allowed to build for a checkpoint holding arrays. The ``numpy.dtypes`` module exists from NumPy 1.25;
    the classes of the builtin dtypes are reached without it too, as ``type(np.dtype(code))`` (on older
    NumPy these are the ``numpy.dtype[...]`` classes, which its pickles never name)."""
    found = {type(np.dtype(code)) for code in np.typecodes["All"]}
    try:
        from numpy import dtypes
    except ImportError:  # NumPy < 1.25
        return sorted(found, key=str)
    return sorted(found | {getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")}, key=str)


def _numpy_globals() -> list:
    """The NumPy callables that rebuild arrays, scalars and dtypes (nothing that runs user code)."""
    core = getattr(np, "_core", None) or np.core  # numpy._core from NumPy 2
    return [np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar, *_dtype_classes()]


SAFE_GLOBALS = [*_numpy_globals(), argparse.Namespace, collections.OrderedDict]


class _RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader that builds only data: NumPy arrays and scalars, and Python containers."""

    def find_class(self, module: str, name: str):
        if module in _NUMPY_MODULES and (name in _NUMPY_NAMES or name.endswith("DType")):
            if module.startswith("numpy._core") and not hasattr(np, "_core"):  # written by NumPy >= 2, read by 1.x
                module = module.replace("numpy._core", "numpy.core", 1)
            return super().find_class(module, name)
        if (module, name) in (("collections", "OrderedDict"), ("argparse", "Namespace"), ("_codecs", "encode")):
            return super().find_class(module, name)
        if module in ("builtins", "__builtin__") and name in ("set", "frozenset", "slice", "complex"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"Unsupported global: GLOBAL {module}.{name}")


def _refusal(path: Path, error: Exception) -> CheckpointError:
    found = re.search(r"GLOBAL [\w.]+", str(error))
    what = found.group(0).replace("GLOBAL ", "") if found else "a non-data object"
    return CheckpointError(
        f"{path}: refusing to unpickle it: it asks for {what}, which is not plain data and could run code. "
        "If you trust this file, pass --trust (or pretrain.trust=true) to unpickle it fully."
    )


def _plain_pickle(path: Path) -> object:
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f, encoding="latin1").load()


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file, as NumPy arrays; CheckpointError when it is not a sound one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:  # torch's reader: it has bfloat16, which NumPy lacks
            return {k: as_numpy(f.get_tensor(k)) for k in f.keys()}
    except Exception as e:  # safetensors' own errors, OSError
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__}: {one_line(e)})") from None


def as_numpy(tensor) -> np.ndarray:
    """A tensor's values as a NumPy array; bfloat16 (which NumPy has no type for) as float32, which holds every
    bfloat16 value exactly."""
    import torch

    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()


def one_line(error: object) -> str:
    """An exception's message on one line (pickle's and torch's span several)."""
    return " ".join(str(error).split())


def safetensors_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """(name -> shape of every tensor, the text metadata) of a safetensors file, from its header alone (which
    safetensors checks against the file's size); CheckpointError when it is not a sound one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a safetensors file (:func:`safetensors_header`)."""
    return safetensors_header(path)[0]


def load(path: Path, trust: bool = False) -> object:
    """The object stored in a checkpoint file, read safely unless ``trust``. (torch is imported here, not
    at the top: a launcher whose conversions are cached never reads a checkpoint, see ``xfer.trial.devices``.)"""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    if path.suffix == SAFETENSORS:  # nothing to trust or distrust: the format holds no code
        author = safetensors_header(path)[1].get("__author__")
        return {"model": read_safetensors(path), "__author__": author} if author else read_safetensors(path)
    is_torch = zipfile.is_zipfile(path)
    if trust:
        log.warning("UNPICKLING %s FULLY (trust=true): any code inside it runs now", path)
        try:
            if not is_torch:  # a plain pickle is unpickled once (torch's legacy reader would run it, then fail)
                with open(path, "rb") as f:
                    obj = pickle.load(f, encoding="latin1")
                if obj != _TORCH_LEGACY_MAGIC:
                    return obj
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # a class it names that cannot be imported here, a damaged file
            raise CheckpointError(f"{path}: could not be unpickled, even trusted ({type(e).__name__}: "
                                  f"{one_line(e)})") from None  # fmt: skip
    if not is_torch:
        try:
            obj = _plain_pickle(path)
        except pickle.UnpicklingError as e:
            if "Unsupported global" in str(e):
                raise _refusal(path, e) from None
            raise CheckpointError(f"{path}: not a checkpoint (not a PyTorch file or a pickle, or a damaged one: "
                                  f"{one_line(e)})") from None  # fmt: skip
        except Exception as e:
            raise CheckpointError(f"{path}: not a checkpoint (not a PyTorch file or a pickle, or a damaged one: "
                                  f"{one_line(e)})") from None  # fmt: skip
        if obj != _TORCH_LEGACY_MAGIC:
            return obj
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "weights_only" in str(e):
            raise _refusal(path, e) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({one_line(e)})") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {one_line(e)})") from None
