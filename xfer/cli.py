"""Command-line glue for launch.py: seed ranges and bad choices (a trial's folder is derived in
``xfer.store.identity``).

``seed=0-4`` is the user's shorthand; Hydra knows ``seed=range(0,5)`` and ``seed=0,1,2,3,4``. The
shorthand is rewritten before Hydra parses the command line, and refused when it is malformed or when
``-m`` is missing (a range must never quietly run one trial). A choice of a config group that has no file
(``pretrain=nope``), an option no conf file has (``+trial.evalutor=...``: Hydra would add it and nothing would
read it), and a yes/no option set to anything but true or false, are refused here too, one line each, before
Hydra composes anything.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

_SEED = re.compile(r"^(\+{0,2}seed)=(.*)$")
_RANGE = re.compile(r"^(\d+)-(\d+)$")
_HYDRA_SWEEP = re.compile(r"^(range|choice|interval|glob)\(|,")
_NEGATIVE = re.compile(r"^-\d+(\.\d*)?$")  # seed=-1: a number, not a range
# Hydra's flags that take a value (``--flag VALUE`` or ``--flag=VALUE``); ``--info`` takes one of _INFO, or none.
_VALUED = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
           "--experimental-rerun"}  # fmt: skip
_INFO = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


class UsageError(Exception):
    """A malformed command line; the message says how to write it."""


def expand_seed_ranges(argv: list[str]) -> list[str]:
    """Rewrite ``seed=A-B`` into Hydra's ``seed=range(A,B+1)``; refuse bad ranges."""
    multirun = any(a in ("-m", "--multirun") for a in argv)
    out = []
    for arg in argv:
        m = _SEED.match(arg)
        if not m or "-" not in m.group(2) or _HYDRA_SWEEP.search(m.group(2)):
            out.append(arg)
            continue
        key, value = m.groups()
        r = _RANGE.match(value)
        if _NEGATIVE.match(value):
            raise UsageError(f"seed={value}: a seed is a non-negative integer; sweep with -m seed=0-4.")
        if not r:
            raise UsageError(f"bad seed range {value!r}: write seed=START-END with integers, e.g. seed=0-4.")
        start, end = int(r.group(1)), int(r.group(2))
        if start > end:
            raise UsageError(f"bad seed range {value!r}: the start exceeds the end; did you mean seed={end}-{start}?")
        if not multirun:
            raise UsageError(
                f"seed={value} is a sweep of {end - start + 1} trials: add -m, e.g. python launch.py -m {arg}"
            )
        out.append(f"{key}=range({start},{end + 1})")
    return out


def split_argv(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """(the overrides, Hydra's flags that take a value) of launch.py's ``argv`` (``argv[0]`` the script), read as
    Hydra's own argument parser reads them: ``{"--config-path": "conf2"}`` for ``-cp conf2``."""
    overrides, flags, args = [], {}, iter(argv[1:])
    long = {"-c": "--cfg", "-p": "--package", "-cp": "--config-path", "-cn": "--config-name", "-cd": "--config-dir"}
    for arg in args:
        if not arg.startswith("-"):
            overrides.append(arg)
            continue
        flag, eq, value = arg.partition("=")
        if flag in _VALUED:
            flags[long.get(flag, flag)] = value if eq else next(args, "")
    return [o for o in overrides if o not in _INFO], flags  # ``--info defaults``'s value is no override


def config_dirs(argv: list[str]) -> list[Path] | None:
    """The folders Hydra will read config groups from for launch.py's ``argv``: ``conf/`` beside the script, or the
    ``--config-path`` (``-cp``) given (relative to the script), plus a ``--config-dir`` (``-cd``, relative to the
    working directory). None when they cannot be known from here (a ``pkg://`` path, or ``hydra.searchpath`` set)."""
    overrides, flags = split_argv(argv)
    if any(o.lstrip("+~").startswith("hydra.searchpath") for o in overrides):
        return None
    path = flags.get("--config-path", "conf")
    if path.startswith("pkg://"):
        return None
    dirs = [Path(argv[0]).resolve().parent / path.removeprefix("file://")]
    if flags.get("--config-dir"):
        dirs.append(Path(os.path.abspath(flags["--config-dir"].removeprefix("file://"))))
    return dirs


def choice_problems(overrides: list[str], dirs: list[Path]) -> list[str]:
    """One message per choice of a config group that no file of that group holds, each once: ``pretrain=nope``,
    ``+experiment=nope``, ``input@pretrain.input=nope``, and each such element of a sweep (``pretrain=densecl,nope``).

    A config group is a folder under one of ``dirs`` (Hydra's config folders); a choice is known when that
    folder holds ``<choice>.yaml`` (or the deprecated ``.yml``). Only plain string choices, alone or in a choice
    sweep, are checked: ``glob()``, ``range()``, ``interval()``, lists, interpolations, deletions, Hydra's own
    groups (``hydra/...``) and whatever Hydra's override parser refuses are left to Hydra, which says what is
    wrong with them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep
    from hydra.errors import HydraException

    parser, found = OverridesParser.create(), []
    for text in overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except HydraException:
            continue
        group = override.key_or_group
        folders = [d / group for d in dirs if (d / group).is_dir()]
        if override.is_delete() or group.startswith("hydra") or not folders:
            continue
        value = override.value()
        choices = value.list if isinstance(value, ChoiceSweep) else [value]
        for choice in choices:
            if not isinstance(choice, str) or "${" in choice:
                continue
            if not any((f / f"{choice}{ext}").is_file() for f in folders for ext in (".yaml", ".yml")):
                known = sorted({y.stem for f in folders for y in [*f.glob("*.yaml"), *f.glob("*.yml")]})
                found.append(f"{override.get_key_element()}={choice}: no such {group}; choose one of: "
                             f"{', '.join(known)}.")  # fmt: skip
    return list(dict.fromkeys(found))


# Subtrees whose keys are open: detectron2's keys (checked against its defaults by the launch), a benchmark's
# per-input values, sbatch's own options, the published numbers and the smoke's generation settings.
OPEN = frozenset({"d2", "by_input", "sbatch", "published", "published_std", "device_s_per_iter", "smoke", "hydra"})


def known_keys(dirs: list[Path]) -> set[str]:
    """Every option the conf files set, dotted (``pretrain.weights``, ``cluster.gpus_per_trial``): the primary
    config's and, under their group's name, every group file's (``# @package _global_`` files at the top). Read
    once per process: :func:`key_problems` and :func:`spelling_problems` both ask."""
    return set(_known_keys(tuple(dirs)))


@functools.cache
def _known_keys(dirs: tuple[Path, ...]) -> frozenset[str]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where PyYAML has it: 30 files at each launch

    def paths(node: object, prefix: str) -> set[str]:
        if not isinstance(node, dict):
            return set()
        return {f"{prefix}{k}" for k in node} | {p for k, v in node.items() for p in paths(v, f"{prefix}{k}.")}

    found: set[str] = set()
    for d in dirs:
        for path in [d / "config.yaml", *d.glob("*/*.yaml")]:
            try:
                text = path.read_text()
                node = yaml.load(text, Loader=loader) or {}
            except (OSError, yaml.YAMLError):
                continue
            node = {k: v for k, v in node.items() if k != "defaults"} if isinstance(node, dict) else {}
            if path.parent == d:
                found |= paths(node, "")
                continue
            group = path.parent.name
            found |= {group} | paths(node, "" if "@package _global_" in text else f"{group}.")
            if group == "input":  # chosen as input@pretrain.input
                found |= {"pretrain.input"} | paths(node, "pretrain.input.")
    return frozenset(found)


def key_problems(overrides: list[str], dirs: list[Path]) -> list[str]:
    """One message per option that no conf file has (``pretrain.weigths=...``, or ``+trial.evalutor=...`` as
    Hydra's own message advises: added, then read by nothing, so the default ran), naming the nearest option.
    Keys under :data:`OPEN` subtrees, group choices and deletions are left alone."""
    import difflib

    known = known_keys(dirs)
    if not known:
        return []
    found = []
    for text in overrides:
        key, eq, _ = text.partition("=")
        key = key.lstrip("+")
        if not eq or key.startswith("~") or "@" in key or key in known or OPEN.intersection(key.split(".")):
            continue
        peers = sorted(k for k in known if k.count(".") == key.count("."))  # clusterr.devices: cluster.devices
        near = difflib.get_close_matches(key, peers, n=1, cutoff=0.75)
        hint = f"; did you mean {near[0]}?" if near else '; see README, "Config reference"'
        found.append(f"{key}: no such option{hint} (added with +, nothing would read it: the default would run)")
    return list(dict.fromkeys(found))


def boolean_problems(overrides: list[str]) -> list[str]:
    """One message per yes/no option (``xfer.trial.checks.BOOLEANS``) given anything but true or false on the
    command line (``trial.rerun_stale=no``), each element of a sweep too: refused even where no trial would
    be checked (all done), as the launch refuses it in a composed config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep
    from hydra.errors import HydraException

    from xfer.trial.checks import BOOLEANS, boolean_problem

    parser, found = OverridesParser.create(), []
    for text in overrides:
        if text.lstrip("+~").split("=", 1)[0] not in BOOLEANS:
            continue
        try:
            (override,) = parser.parse_overrides([text])
        except HydraException:
            continue
        value = override.value()
        if override.is_delete() or (override.is_sweep_override() and not isinstance(value, ChoiceSweep)):
            continue  # range() and interval() sweeps are numbers; glob() is left to Hydra
        for v in value.list if isinstance(value, ChoiceSweep) else [value]:
            if not (isinstance(v, str) and "${" in v):  # an interpolation is resolved, and checked, when composed
                found += [m for m in [boolean_problem(override.key_or_group, v)] if m]
    return list(dict.fromkeys(found))


_MODES = {"-m": "-m", "--multirun": "-m", "-r": "--run", "--run": "--run", "-c": "--cfg", "--cfg": "--cfg",
          "-i": "--info", "--info": "--info", "-sc": "--shell-completion", "--shell-completion": "--shell-completion"}


def mode_problem(argv: list[str]) -> str:
    """Why launch.py's ``argv`` asks Hydra for two things at once (``-m --cfg job``: Hydra raises a ValueError with
    a traceback); "" when it asks for one."""
    modes = list(dict.fromkeys(_MODES[a.partition("=")[0]] for a in argv[1:] if a.partition("=")[0] in _MODES))
    if len(modes) < 2:
        return ""
    return (f"{' and '.join(modes)} together: Hydra does one of them at a time. To see the config of one trial, drop "
            "-m (python launch.py --cfg job pretrain=densecl seed=0); to check a whole sweep, use -m ... plan=true")


def output_root_problem(overrides: list[str]) -> str:
    """Why ``output_root`` (as given, else conf's ``outputs``) cannot hold the sweep's folders: a file on its way
    (Hydra's mkdir would be a traceback); "" when it can, or cannot be told before composing (an interpolation,
    or a sweep over several)."""
    given = [o.partition("=")[2] for o in overrides if o.partition("=")[0].lstrip("+") == "output_root"]
    root = given[-1] if given else "outputs"
    if not root.strip():  # output_root=$OUT with OUT unset: the sweep would be written at /
        return "output_root is empty (a variable not set?): give the folder to write the sweep into"
    if "${" in root or _HYDRA_SWEEP.search(root):
        return ""
    for path in (Path(root), *Path(root).parents):
        if path.exists() or path.is_symlink():
            if path.is_dir():
                return ""
            return f"output_root={root}: {path} is not a folder; give output_root a folder (made where missing)"
    return ""


_PLAIN_SWEEP = re.compile(r"^[^\[\]{}()'\"]*,[^\[\]{}()'\"]*$")  # a,b: no list, dict, function or quote


def spelling_problems(overrides: list[str], multirun: bool, groups: set[str], known: set[str]) -> list[str]:
    """Command lines Hydra would refuse with a message of its own or read otherwise than meant, one line each: a
    sweep without ``-m``, a list of a group's choices (``pretrain=[a,b]``: Hydra loads both files), and a
    detectron2 key set without ``+`` that no conf file sets (``known``: :func:`known_keys`). An option given twice
    is Hydra's to take, the last one winning, as scripts that append to a base command rely on."""
    found = []
    for text in overrides:
        key, eq, value = text.partition("=")
        if not eq or key.startswith("~"):
            continue
        name = key.lstrip("+")
        if not multirun and _PLAIN_SWEEP.match(value) and name != "seed":
            found.append(f"{text} is a sweep: add -m, e.g. python launch.py -m {text}")
        if name in groups and value.startswith("[") and value.endswith("]"):
            found.append(f"{text}: a list loads every file at once; to sweep the choices, write -m {name}={value[1:-1]}")
        if not key.startswith("+") and name.split(".")[0] == "d2" and "." in name and name not in known:
            found.append(f"{text}: detectron2 keys are added to d2 with +: +{text}")
    return found


def prepare_argv(argv: list[str]) -> list[str]:
    """launch.py's argv, ready for Hydra; a usage error, or each unknown group choice and non-boolean yes/no
    option, exits with status 2 and one line per problem."""
    try:
        argv = expand_seed_ranges(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    overrides, _ = split_argv(argv)
    dirs = config_dirs(argv)
    found = [p for p in [mode_problem(argv)] if p]
    found += (choice_problems(overrides, dirs) + key_problems(overrides, dirs) if dirs else []) + boolean_problems(overrides)
    groups = {p.name for d in dirs or [] for p in d.iterdir() if p.is_dir()}
    found += spelling_problems(overrides, any(a in ("-m", "--multirun") for a in argv), groups,
                               known_keys(dirs) if dirs else set())  # fmt: skip
    found += [p for p in [output_root_problem(overrides)] if p]
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    if found:
        raise SystemExit(2)
    return argv
