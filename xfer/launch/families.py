"""Families of jobs: one Hydra composition for the jobs of a sweep that differ only in plain leaf values.

Hydra composes a job in two steps: the defaults list (config groups and what they pull in) makes a config,
then each override of a key that is no config group is applied to it as ``OmegaConf.update(cfg, key, value,
merge=True)``. A *leaf* override is one of those with nothing else to it: ``key=value`` (Hydra's CHANGE, no
``+``, ``++`` or ``~``), no ``@package``, a key that is no config group and not under ``hydra``, that no other
override of the job setting a value overlaps (the same key, or one inside the other: their order would
matter), and a value that is no list or dict (those merge into what is there). No leaf changes the defaults
list (its interpolations name config groups only), so jobs
whose overrides are the same but for their leaves' values compose to one config but for those values:
Hydra composes the first, and each job gets its own values set (:func:`apply`), exactly as Hydra would have
set them, its values parsed by Hydra's own override parser. A 2,000-trial sweep of 40 checkpoints x 2
backbones x 5 benchmarks x 5 seeds (``pretrain.name=a,b,...`` or ``pretrain.weights=/a.pth,...``) is then
10 compositions, not 400 (Hydra takes about 0.1 s each). A key that turns out to be a config group of the
composition (one a choice pulls in) is no leaf there (:func:`shareable`), and a value the shared node refuses
is composed by Hydra on its own (``xfer.launch.trials.plan``), which says what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf

Leaves = tuple[tuple[str, Any], ...]  # (key, value as Hydra parses it), in the job's order
Shape = tuple[tuple[str, str], ...]  # per override: ("=", key) for a leaf, ("", the override as written) else
PLAIN = (str, int, float, bool, type(None))  # values Hydra sets as they are (lists and dicts merge)


def groups_of(choices: Mapping[str, Any]) -> frozenset[str]:
    """The config groups of a composed config's ``hydra.runtime.choices`` (``input@pretrain.input`` is ``input``)."""
    return frozenset(k.split("@", 1)[0] for k in choices)


def is_leaf(o: Override, groups: frozenset[str]) -> bool:
    """A plain ``key=value`` override of a key that is no config group (see the module's docstring)."""
    return (o.type == OverrideType.CHANGE and o.package is None and not o.is_hydra_override()
            and not o.is_sweep_override() and o.key_or_group not in groups
            and isinstance(o.value(), PLAIN))  # fmt: skip


def _overlaps(key: str, other: str) -> bool:
    return key == other or key.startswith(other + ".") or other.startswith(key + ".")


@dataclass(frozen=True)
class Job:
    """A job's overrides split: ``shape`` (the same for the jobs one composition serves: its other overrides as
    written, its leaves' keys) and ``leaves`` (this job's leaf values)."""

    shape: Shape
    leaves: Leaves


@dataclass
class Splitter:
    """Splits jobs' overrides into shape and leaves; ``groups``: the config groups (:func:`groups_of`). Parses
    each distinct override once (Hydra's parser takes about half a millisecond an override)."""

    groups: frozenset[str]
    _parser: OverridesParser = field(default_factory=OverridesParser.create)
    _parsed: dict[str, Override | None] = field(default_factory=dict)

    def parse(self, text: str) -> Override | None:
        if text not in self._parsed:
            try:
                self._parsed[text] = self._parser.parse_overrides([text])[0]
            except Exception:  # Hydra says what is wrong with it when it composes the job  # noqa: BLE001
                self._parsed[text] = None
        return self._parsed[text]

    def chooses(self, o: Override) -> bool:
        """Whether the override chooses a config (a group's option, in the defaults list) rather than sets a value."""
        return o.package is not None or o.key_or_group in self.groups or o.key_or_group.startswith("hydra/")

    def split(self, overrides: Sequence[str]) -> Job:
        parsed = [self.parse(o) for o in overrides]
        keys = [o.key_or_group for o in parsed if o is not None and not self.chooses(o)]  # what sets values
        shape, leaves = [], []
        for text, o in zip(overrides, parsed, strict=True):
            if o is not None and is_leaf(o, self.groups) and sum(_overlaps(o.key_or_group, k) for k in keys) == 1:
                shape.append(("=", o.key_or_group))
                leaves.append((o.key_or_group, o.value()))
            else:
                shape.append(("", text))
        return Job(tuple(shape), tuple(leaves))


def shareable(cfg: DictConfig, shape: Shape) -> bool:
    """Whether the leaves of jobs of this shape can be set on a composition ``cfg`` of one of them: none of their
    keys is one of its config groups (a group that only some choice pulls in is not among the primary config's)."""
    found = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    groups = groups_of(OmegaConf.to_container(found)) if found is not None else frozenset()
    return not any(kind == "=" and key in groups for kind, key in shape)


def apply(cfg: DictConfig, leaves: Leaves) -> None:
    """Set a job's leaf values on a composition it shares, as Hydra applies an override."""
    for key, value in leaves:
        OmegaConf.update(cfg, key, value, merge=True)


def changed(want: Leaves, had: Leaves | None) -> Leaves:
    """The values of ``want`` that a config holding ``had`` (None: unknown) must be set to: those that differ,
    in value or in type (``1``, ``1.0`` and ``true`` are equal in Python, not in a config)."""
    if had is None:
        return want
    before = {k: (type(v), v) for k, v in had}
    return tuple((k, v) for k, v in want if before.get(k) != (type(v), v))


def set_list(parent: DictConfig, key: str, items: Sequence[str], had: Sequence[str] | None) -> None:
    """``parent[key] = list(items)``, setting only the items that differ from ``had`` (None: unknown) where
    their lengths agree: a whole list is wrapped item by item, about 0.2 ms each."""
    if had is None or len(had) != len(items):
        parent[key] = list(items)
        return
    node = parent[key]
    for i, (new, old) in enumerate(zip(items, had, strict=True)):
        if new != old:
            node[i] = new
