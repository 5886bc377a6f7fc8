"""Where trials go on this node: the devices to fill (``cluster.devices``), cut into groups of
``cluster.gpus_per_trial`` that each run one trial at a time, and what in the local cluster options would make
that fail or change the recipe (the launcher asks before anything runs; ``xfer.launch.local`` runs the groups).
"""

from __future__ import annotations

from omegaconf import DictConfig, ListConfig

from xfer.trial.devices import visible_gpus


def resolve_devices(spec, device: str) -> list[str]:
    """``cluster.devices`` -> the device ids to fill: ``auto`` (every visible GPU; one slot on CPU),
    ``N`` (the first N), or a list of ids. On CPU, N slots stand in for GPUs (gloo processes)."""
    if device != "cuda":
        if spec == "auto":
            return ["cpu0"]
        ids = range(spec) if isinstance(spec, int) and not isinstance(spec, bool) else spec
        return [f"cpu{i}" for i in ids]
    visible = visible_gpus()
    if spec == "auto":
        return visible
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec > len(visible):
            raise ValueError(f"cluster.devices={spec}: only {len(visible)} GPU(s) visible ({','.join(visible)}).")
        return visible[:spec]
    ids = [str(i) for i in spec]
    unknown = [i for i in ids if i not in visible]
    if unknown:
        raise ValueError(f"cluster.devices: GPU(s) {','.join(unknown)} not visible (visible: {','.join(visible)}).")
    return ids


def per_trial(spec, n_devices: int) -> int:
    return n_devices if spec == "auto" else int(spec)


def groups(devices: list[str], size: int) -> list[tuple[str, ...]]:
    """floor(len(devices) / size) disjoint groups, in order; leftover devices stay idle."""
    return [tuple(devices[i : i + size]) for i in range(0, len(devices) - size + 1, size)]


PROGRESS_MODES = ("auto", "live", "lines")  # cluster.progress: a live table on a terminal (auto), always, or never


def problems(cluster: DictConfig, batch: int, device: str) -> list[str]:
    """What would make the local run fail or change the recipe, as messages naming the fix."""
    found = _device_problems(cluster, batch, device)
    if not (isinstance(cluster.stop_grace_s, int | float) and not isinstance(cluster.stop_grace_s, bool)
            and cluster.stop_grace_s >= 0):  # fmt: skip
        found.append(f"cluster.stop_grace_s={cluster.stop_grace_s!r}: seconds, 0 or more.")
    progress = cluster.get("progress", "auto")
    if not isinstance(progress, str) or progress not in PROGRESS_MODES:
        found.append(f"cluster.progress={progress!r}: use one of {', '.join(PROGRESS_MODES)} (auto: a live table on a "
                     "terminal, plain lines otherwise).")  # fmt: skip
    return found


def _device_problems(cluster: DictConfig, batch: int, device: str) -> list[str]:
    """What is wrong with ``cluster.devices`` and ``cluster.gpus_per_trial`` for a global batch of ``batch``."""
    spec = cluster.devices
    is_count = isinstance(spec, int) and not isinstance(spec, bool)
    if not (spec == "auto" or (is_count and spec >= 1) or (isinstance(spec, list | tuple | ListConfig) and len(spec))):
        return [f"cluster.devices={spec!r}: use auto, a count (e.g. 4) or a list of GPU ids (e.g. [0,2])."]
    twice = _listed_twice(spec)
    if twice is not None:
        return [f"cluster.devices lists GPU {twice} twice: name each GPU once (e.g. [0,1]); a GPU runs one trial "
                "process at a time."]  # fmt: skip
    try:
        devices = resolve_devices(spec, device)
    except ValueError as e:
        return [str(e)]
    g = cluster.gpus_per_trial
    if g != "auto" and (not isinstance(g, int) or isinstance(g, bool) or g < 1):
        return [f"cluster.gpus_per_trial={g!r}: use auto (all devices) or a positive count."]
    n = per_trial(g, len(devices))
    found = []
    if n > len(devices):
        found.append(f"cluster.gpus_per_trial={n}: only {len(devices)} device(s) to use ({','.join(devices)}).")
    if n and batch % n:
        divisors = [d for d in range(1, min(batch, len(devices)) + 1) if batch % d == 0]
        found.append(f"cluster.gpus_per_trial={n} cannot share the global batch {batch} evenly (it stays {batch} "
                     f"whatever the GPU count); use one of {divisors}.")  # fmt: skip
    return found


def _listed_twice(spec) -> str | None:
    """The first GPU id a list of ``cluster.devices`` names more than once (``[0,0]``, ``[0,"0"]``), else None."""
    if not isinstance(spec, list | tuple | ListConfig):
        return None
    ids = [str(i) for i in spec]
    return next((i for n, i in enumerate(ids) if i in ids[:n]), None)
