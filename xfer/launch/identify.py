"""What a composed trial config runs: its identity (``xfer.store.identity``) and its setting's readable name.

The launcher asks this once per family of jobs that differ only by seed. The identity comes from what the
trial will run, never from how the command line spelled it: the recipe as detectron2 will resolve it, the
weights' content and conversion, the datasets' content files, the evaluator and its libraries' versions.
Digests of large files are kept under ``paths.cache`` by file state (``xfer.store.digests``), so a launch
after the first reads stats, not contents.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xfer import benchmarks
from xfer.store import digests, files, identity
from xfer.store.identity import Identity
from xfer.trial import checkpoint, checks, convert, recipe

NAMED_GROUPS = ("benchmark", "backbone", "pretrain")  # the choices a setting's name always shows
RUNS_HOW_GROUPS = ("cluster",)  # choices that say how a trial runs: never in a name or an identity
DATA = "data_digests"  # folder under paths.cache: one digest per dataset file-set state
_HEX = re.compile(r"[0-9a-f]{64}")


@functools.cache  # the same for the process: reading a distribution's metadata takes about half a millisecond
def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def evaluator_of(cfg: DictConfig) -> dict:
    """The evaluator part of the identity: ``trial.evaluator`` and the versions of the libraries it computes with."""
    kind = str(OmegaConf.select(cfg, "trial.evaluator", default="xfer"))
    libraries = getattr(benchmarks.of(cfg), "EVALUATOR_LIBRARIES", {}).get(kind, ())
    return {"name": kind, "libraries": {lib: version(lib) for lib in libraries}}


def weights_of(cfg: DictConfig, sha256: str, spelled: tuple[object, object] | None = None) -> dict:
    """The weights part: their content and how they are converted (no conversion for random init). ``spelled``:
    (format, prefix) as :meth:`Identifier.conversion` names them, when not the config's own."""
    if sha256 == identity.NO_WEIGHTS:
        return {"sha256": sha256}
    fmt, prefix = spelled if spelled is not None else conversion_of(cfg)
    return {"sha256": sha256, "format": str(fmt), "prefix": prefix}


def conversion_of(cfg: DictConfig) -> tuple[object, object]:
    """(``pretrain.format``, ``pretrain.prefix``) as the config spells them."""
    return OmegaConf.select(cfg, "pretrain.format"), OmegaConf.select(cfg, "pretrain.prefix")


def same_tensors(a: Path, b: Path) -> bool:
    """Whether two converted weights files hold the same tensors (names, shapes, dtypes and values; their
    metadata, which names the layout read, aside)."""
    if a == b:
        return True
    x, y = checkpoint.read_safetensors(a), checkpoint.read_safetensors(b)
    return x.keys() == y.keys() and all(x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]) for k in x)


def files_sha256(root: Path, paths: list[Path], store: Path | None) -> str:
    """A digest of a dataset's content files, independent of where the dataset lives (names relative to
    ``root``; a missing file counts as missing). Kept under ``store`` keyed by every file's state (device,
    inode, size, mtime, ctime: ``xfer.store.digests.file_state``), so an unchanged dataset is stat'ed, not read."""
    states: list[tuple] = []
    for p in paths:
        try:
            states.append(digests.file_state(p))
        except OSError:
            states.append((str(p), "missing"))
    if all(s[-1] == "missing" for s in states):  # no dataset there (moved, deleted): what it holds is unknown
        return identity.ABSENT
    key = hashlib.sha256(repr(states).encode()).hexdigest()[:32]
    entry = Path(store) / DATA / key if store else None
    if entry is not None:
        try:
            kept = entry.read_text().strip()
            if _HEX.fullmatch(kept):
                return kept
        except OSError:
            pass
    h = hashlib.sha256()
    for p in paths:
        name = p.relative_to(root) if p.is_relative_to(root) else p
        h.update(f"{name}\0".encode())
        try:
            h.update(hashlib.sha256(p.read_bytes()).digest())
        except OSError:
            h.update(b"missing")
    found = h.hexdigest()
    if entry is not None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        files.write_text_atomic(entry, found + "\n")
    return found


def datasets_of(cfg: DictConfig) -> list[str]:
    return [str(n) for n in [*(recipe.value(cfg, "DATASETS.TRAIN") or ()), *(recipe.value(cfg, "DATASETS.TEST") or ())]]


def data_of(cfg: DictConfig, memo: dict) -> dict[str, str]:
    """The data part: per dataset the recipe trains or tests on, the digest of its content files."""
    fmt = benchmarks.of(cfg)
    root = Path(str(cfg.benchmark.datasets_root)).resolve()
    store = Path(str(cfg.paths.cache))
    out = {}
    for name in datasets_of(cfg):
        key = (fmt.__name__, str(root), name)
        if key not in memo:
            memo[key] = files_sha256(root, fmt.content_files(root, name), store)
        out[name] = memo[key]
    return out


@dataclass
class Identifier:
    """Identities and setting names for one launch: caches what several families share (detectron2's
    defaults, dataset digests, the plain choices' configs). ``compose(overrides)`` composes the primary config
    with those overrides (Hydra's own composition, with its hydra node)."""

    compose: Callable[[list[str]], DictConfig]
    cache: Path
    _defaults: dict | None = None
    _data: dict = field(default_factory=dict)
    _plain: dict = field(default_factory=dict)
    _recipes: dict = field(default_factory=dict)  # the plain compositions' resolved recipes, by their overrides
    _same: dict = field(default_factory=dict)  # (converted file, converted file) -> whether they hold the same tensors

    @property
    def defaults(self) -> dict:
        if self._defaults is None:
            self._defaults = recipe.d2_defaults(self.cache)
        return self._defaults

    def identity(self, cfg: DictConfig, sha256: str, choices: dict[str, str] | None = None) -> Identity:
        """The identity of the trials of ``cfg`` (its seed left out: ``Identity.of_seed``); ``choices``: its config
        groups' (its conversion is then named as :meth:`conversion` names it)."""
        spelled = self.conversion(cfg, self._reference(choices)[1]) if choices else None
        return Identity(recipe.resolved(cfg, self.defaults), weights_of(cfg, sha256, spelled),
                        data_of(cfg, self._data), evaluator_of(cfg))  # fmt: skip

    def conversion(self, cfg: DictConfig, ref: DictConfig) -> tuple[object, object]:
        """(format, prefix) as the setting's name and its identity record them: the pretrain's own (``ref``'s)
        where ``cfg``'s convert the weights to the same tensors (``pretrain.format=auto`` or
        ``pretrain.prefix=backbone.`` for an OpenSelfSup checkpoint whose pretrain says ``openselfsup``,
        ``pretrain.prefix=''`` for a bare state dict), else ``cfg``'s: one trial however its conversion was
        spelled. Converting (cached, as the launch's checks then find it) is asked only where they differ."""
        mine, theirs = conversion_of(cfg), conversion_of(ref)
        if mine == theirs or identity.no_weights(cfg):
            return mine
        try:
            pair = (checks.weights_of(cfg, mine)[0], checks.weights_of(cfg, theirs)[0])
            if pair not in self._same:  # asked for the name and for the identity of each family: read once
                self._same[pair] = same_tensors(*pair)
            same = self._same[pair]
        except (convert.ConversionError, checkpoint.CheckpointError, OSError, OmegaConfBaseException):
            return mine  # the launch's checks name why the weights cannot be converted
        return theirs if same else mine

    def _composed(self, overrides: tuple[str, ...]) -> DictConfig:
        if overrides not in self._plain:
            self._plain[overrides] = self.compose(list(overrides))
        return self._plain[overrides]

    def extras(self, cfg: DictConfig, choices: dict[str, str]) -> str:
        """What the setting's name adds to ``<backbone>_<pretrain>``: the group choices that differ from what its
        benchmark, backbone and pretrain compose by themselves (``experiment=amp``, ``input=bgr_msra``), then
        every recipe value and conversion option that differs from what those choices compose
        (``SOLVER.BASE_LR=0.01``). Readable, and the same however the overrides were spelled."""
        ref_key, ref, groups = self._reference(choices)
        if ref_key not in self._recipes:  # the plain compositions never change; a sweep's families share a few
            self._recipes[ref_key] = recipe.resolved(ref, self.defaults)
        now, then = recipe.resolved(cfg, self.defaults), self._recipes[ref_key]
        named = [f"{g.split('@', 1)[0]}={c}" for g, c in sorted(groups.items())]
        named += [f"{k}={identity.show(v)}" for k, v in now.items() if k not in then or then[k] != v]
        if not identity.no_weights(cfg):
            spelled = self.conversion(cfg, ref)
            named += [f"pretrain.{key}={mine}" for key, mine, theirs in zip(("format", "prefix"), spelled,
                                                                           conversion_of(ref), strict=True) if mine != theirs]  # fmt: skip
        return ",".join(named)

    def _reference(self, choices: dict[str, str]) -> tuple[tuple[str, ...], DictConfig, dict[str, str]]:
        """(overrides, config, other groups): what the setting's benchmark, backbone and pretrain compose by
        themselves, with the other config-group choices that differ from theirs (``experiment=amp``)."""
        base = tuple(f"{g}={choices[g]}" for g in NAMED_GROUPS)
        plain_choices = _choices(self._composed(base))
        groups = {g: c for g, c in choices.items() if g not in NAMED_GROUPS + RUNS_HOW_GROUPS
                  and not g.startswith("hydra/") and c is not None and plain_choices.get(g) != c}  # fmt: skip
        ref_key = base
        if groups:
            ref_key = base + tuple(f"{'' if g in plain_choices else '+'}{g}={c}" for g, c in sorted(groups.items()))
        return ref_key, self._composed(ref_key), groups


def _choices(cfg: DictConfig) -> dict[str, str]:
    found = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    return dict(OmegaConf.to_container(found)) if found is not None else {}


def choices_of(cfg: DictConfig) -> dict[str, str]:
    """The config-group choices a composed config was made of (Hydra's ``hydra.runtime.choices``)."""
    return _choices(cfg)


def refused(cfg: DictConfig, defaults: Mapping[str, object] | None = None) -> list[str]:
    """What detectron2 or xfer would refuse or overwrite in the recipe, each with its fix: a key a trial sets itself
    (``identity.SET_BY``: overwritten per trial), and, given detectron2's ``defaults`` (flattened), a key detectron2
    does not have or a value of another type than its default's (yacs refuses both when the trial merges the
    recipe, after the launch said it would run). Asked of every trial of a sweep, finished ones too: a launch
    that names the sweep done must not have accepted a key it would refuse."""
    found = []
    for where, part in recipe.named_parts(cfg):
        for key, value in identity.flatten(part).items():
            if key in identity.SET_BY:
                found.append(f"d2.{key} is set per trial by xfer (it would be overwritten): use {identity.SET_BY[key]} "
                             "instead.")  # fmt: skip
            elif defaults is not None:
                found += [msg for msg in [key_problem(f"{where}.{key}", value, key, defaults)] if msg]
    return found


def key_problem(name: str, value: object, key: str, defaults: Mapping[str, object]) -> str | None:
    """Why detectron2's config would refuse ``key: value`` (``name``: where the recipe sets it), by yacs's rule
    (``_check_and_coerce_cfg_value_type``): the key must exist; its value must have the default's type, None
    on either side and a list for a tuple excepted (an int is not a float: ``BASE_LR=1`` is refused)."""
    if key not in defaults:
        return (f"{name}: detectron2 has no config key {key} (its defaults are in detectron2/config/defaults.py): "
                "check the spelling.")  # fmt: skip
    default = defaults[key]
    decoded = _decoded(value)
    if decoded is not value:  # recorded as a string, run as what it spells: the identity would not be what runs
        return (f"{name}={value!r}: detectron2 reads this string as {identity.show(decoded)} "
                f"({_a(type(decoded).__name__)}); write it without quotes.")  # fmt: skip
    if value is None or default is None or type(value) is type(default):
        return None
    if isinstance(value, list | tuple) and isinstance(default, list | tuple):
        return None
    hint = ""
    if isinstance(default, float) and type(value) is int:
        hint = f" (write {float(value)!r})"
    elif type(default) is int and isinstance(value, float) and value.is_integer():
        hint = f" (write {int(value)})"
    shown = repr(value) if isinstance(value, str) else identity.show(value)
    return (f"{name}={shown}: detectron2 takes {_a(type(default).__name__)} here (its default is "
            f"{identity.show(default)}), not {_a(type(value).__name__)}{hint}.")  # fmt: skip


def _decoded(value: object) -> object:
    """What yacs's ``_decode_cfg_value`` makes of a value: a string that is a Python literal becomes that literal
    (``"0.01"`` -> 0.01); ``value`` itself otherwise."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
