"""Checks that run on every composed trial config before anything trains or is submitted.

Each problem is one message saying what is wrong, where xfer looked and how to fix it. The launcher
gathers them over the whole sweep (identical messages once) and stops before the first trial.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xfer import benchmarks
from xfer.store import identity
from xfer.store.identity import no_weights
from xfer.trial import convert, converted, devices, recipe
from xfer.trial.convert import LAYOUTS


class InputError(Exception):
    """Bad input found before running: ``problems`` holds one message per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


NO_FORMAT = "none"  # the ``pretrain.format`` of a pretrain without weights (``conf/pretrain/scratch.yaml``)
# Options read as yes/no. Hydra parses true/false (any case) as booleans; anything else (``no``, ``off``, ``1``) arrives
# as another type, which Python's truth test would read as true or false by accident (``bool("no")`` is True).
BOOLEANS = ("plan", "trial.rerun_stale", "pretrain.trust", "cluster.wait", "benchmark.requires_gpu",
            "benchmark.generate")  # fmt: skip
DEVICES = ("auto", "cpu", "cuda")  # trial.device
_ABSENT = object()


def boolean_problem(key: str, value: object) -> str | None:
    """The message for a yes/no option ``key`` set to ``value`` when that is not a boolean, else None."""
    if isinstance(value, bool):
        return None
    return f"{key}={'null' if value is None else repr(value)}: true or false."


def boolean_problems(cfg: DictConfig) -> list[str]:
    """The options of :data:`BOOLEANS` that ``cfg`` has and sets to something other than true or false."""
    found = []
    for key in BOOLEANS:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        problem = None if value is _ABSENT else boolean_problem(key, value)
        if problem:
            found.append(problem)
    return found


def _weights_problem(cfg: DictConfig) -> str | None:
    pretrain = cfg.pretrain
    try:
        given = pretrain.weights
        weights = Path(given).resolve()
    except OmegaConfBaseException as e:
        return f"pretrain {pretrain.name}: no weights path ({e}). Pass pretrain.weights=/path/to/checkpoint."
    if not str(given).strip():
        return f"pretrain {pretrain.name}: pretrain.weights is empty. Pass pretrain.weights=/path/to/checkpoint."
    if weights.is_file():
        return None
    if str(given).startswith("~"):  # the shell expands ~ only at the start of a word, not after pretrain.weights=
        return (f"pretrain {pretrain.name}: pretrain.weights={given}: '~' is not expanded here (neither the shell "
                "nor Hydra expands it after '='); write the full path, e.g. pretrain.weights=$HOME/"
                f"{str(given)[2:] if str(given).startswith('~/') else '...'}")  # fmt: skip
    if weights.is_dir():
        return (
            f"pretrain {pretrain.name} ({cfg.backbone.name}): pretrain.weights={weights} is a folder, not a checkpoint "
            f"file: pass the checkpoint file in it (pretrain.weights={weights}/<checkpoint>.pth), or drop "
            f"pretrain.weights and set XFER_WEIGHTS={weights} to take the pretrain's default file from it."
        )
    if Path(given).is_symlink():
        return (f"pretrain {pretrain.name} ({cfg.backbone.name}): pretrain.weights={given} is a link to "
                f"{weights}, which is not there: mend the link, or pass the checkpoint's own path.")  # fmt: skip
    source = OmegaConf.select(cfg, "pretrain.source", default="the method's release")
    get = f"Get them from {source} and put them there, pass" if source != "your own" else "Pass"
    folder = OmegaConf.select(cfg, "benchmark.weights_dir", default=None)
    if folder is None or weights.parent != Path(str(folder)).resolve():  # a path of the user's: no folder to set
        return f"pretrain {pretrain.name} ({cfg.backbone.name}): weights not found at {weights}. Pass the " \
               "checkpoint's own path in pretrain.weights=..."  # fmt: skip
    return (
        f"pretrain {pretrain.name} ({cfg.backbone.name}): weights not found at {weights}. {get} "
        f"pretrain.weights=/path/to/checkpoint, or set XFER_WEIGHTS (or paths.weights=...) to the folder holding "
        f"{weights.name}."
    )


def weights_of(cfg: DictConfig, spelled: tuple[object, object] | None = None) -> tuple[Path, convert.Report]:
    """The trial's converted weights (converted now if not cached): raises ConversionError. ``spelled``: another
    (format, prefix) to convert them with than the config's (the launch compares spellings of one conversion)."""
    p, cache = cfg.pretrain, Path(cfg.paths.cache)
    fmt, prefix = spelled if spelled is not None else (p.format, p.prefix)
    return converted.cached(Path(p.weights), fmt, cache / "converted", prefix, p.trust, cache / identity.DIGESTS)


def _conversion_problems(cfg: DictConfig, seen: dict | None = None) -> list[str]:
    """Convert (cached) and compare what the weights are with what the config says they are. ``seen``: the
    conversions this launch found (a checkpoint's is looked up once, not once per benchmark)."""
    name = f"pretrain {cfg.pretrain.name} ({cfg.backbone.name})"
    p = cfg.pretrain
    key = ("converted", str(p.weights), str(p.format), str(p.prefix), bool(p.trust), str(cfg.paths.cache))
    try:
        report = seen[key] if seen is not None and key in seen else weights_of(cfg)[1]
    except convert.ConversionError as e:
        return [f"{name}: {e}"]
    if seen is not None:
        seen[key] = report
    found = []
    depth = cfg.backbone.d2.MODEL.RESNETS.DEPTH
    if report.depth != depth:
        found.append(f"{name}: the weights are a ResNet-{report.depth}, the backbone is ResNet-{depth}; "
                     f"choose backbone=r{report.depth} or the {cfg.backbone.name} checkpoint.")  # fmt: skip
    resnets = recipe_resnets(cfg)
    want = convert.Widths(resnets["STEM_OUT_CHANNELS"], resnets["RES2_OUT_CHANNELS"],
                          resnets["WIDTH_PER_GROUP"] * resnets["NUM_GROUPS"])  # fmt: skip
    if report.widths != want:
        found.append(f"{name}: the weights have channel widths {report.widths}, the recipe builds {want}.")
    convention = cfg.pretrain.input.name
    if report.convention not in (None, convention):
        found.append(
            f"{name}: {report.native} weights{' (in detectron2 names)' if report.layout == 'detectron2' else ''} "
            f"are trained on {report.convention} input, but the pretrain's "
            f"input is {convention}; set input@pretrain.input={report.convention} (or fix pretrain.format)."
        )
    return found


def recipe_resnets(cfg: DictConfig) -> dict:
    """MODEL.RESNETS as the recipe will build it: detectron2 defaults under the merged overrides."""
    defaults = {"STEM_OUT_CHANNELS": 64, "RES2_OUT_CHANNELS": 256, "WIDTH_PER_GROUP": 64, "NUM_GROUPS": 1}
    return {k: recipe.value(cfg, f"MODEL.RESNETS.{k}", v) for k, v in defaults.items()}


MAX_SEED = 2**31 - 1
PRETRAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def problems(cfg: DictConfig, here: bool = True, seen: dict | None = None) -> list[str]:
    """Everything wrong with one composed trial config, as user-facing messages.

    ``here``: the trial will run on this machine (so its GPUs count); False when submitting elsewhere. ``seen``:
    what this launch found so far, shared by its trials: the datasets' problems by format, root, datasets and
    classes (a COCO check looks for each of 118k images: a sweep of many checkpoints looks once), and the
    weights' conversions."""
    found: list[str] = boolean_problems(cfg)
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool) or cfg.seed < 0:
        found.append(f"seed={cfg.seed!r}: a seed is a non-negative integer; sweep with -m seed=0-4.")
    elif cfg.seed > MAX_SEED:  # each process seeds NumPy with seed + rank, which NumPy takes below 2**32
        found.append(f"seed={cfg.seed}: over {MAX_SEED}, the largest seed every process of a trial can use; "
                     "sweep with -m seed=0-4.")  # fmt: skip
    period = OmegaConf.select(cfg, "cluster.checkpoint_period", default=None)
    if period is not None and (isinstance(period, bool) or not isinstance(period, int) or period < 1):
        found.append(f"cluster.checkpoint_period={period!r}: iterations between checkpoints, a whole number of at "
                     "least 1, or null for the recipe's SOLVER.CHECKPOINT_PERIOD.")  # fmt: skip
    name = OmegaConf.select(cfg, "pretrain.name", default=None)
    if not isinstance(name, str) or not PRETRAIN_NAME.fullmatch(name):  # it names the rows and the folders
        found.append(f"pretrain.name={name!r}: the pretrain's name in its rows and folders: letters, digits, _ - . "
                     "(e.g. pretrain.name=mymethod_200ep)")  # fmt: skip
    trials = OmegaConf.select(cfg, "benchmark.trials", default=None)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:  # a row's n/5, the published means' n
        found.append(f"benchmark.trials={trials!r}: how many trials (seeds) a setting's row counts, and the n of the "
                     "published means it is compared with: a positive integer, e.g. benchmark.trials=5.")  # fmt: skip
    if cfg.trial.device not in DEVICES:  # the checks below that depend on the device are left until it is one
        found.append(f"trial.device={cfg.trial.device!r}: use one of {', '.join(DEVICES)} (auto: cuda when a GPU is "
                     "visible, else cpu).")  # fmt: skip
        here = False
    gpus = devices.gpu_count() if here else 0  # a submitting login node's GPUs (and torch) do not matter
    if here and cfg.benchmark.requires_gpu and gpus == 0 and cfg.trial.device != "cpu":
        found.append(
            f"benchmark {cfg.benchmark.name} trains on GPUs, and this machine has none visible "
            "(torch.cuda.device_count() == 0). Run it on a GPU node (or submit to SLURM), check "
            "CUDA_VISIBLE_DEVICES, or try benchmark=smoke, which runs on CPU."
        )
    device = cfg.trial.device if cfg.trial.device != "auto" else ("cuda" if gpus else "cpu")
    if here and device == "cuda" and gpus == 0 and not cfg.benchmark.requires_gpu:
        found.append("trial.device=cuda, and this machine has no GPU visible (torch.cuda.device_count() == 0): "
                     "use trial.device=auto or cpu, or run on a GPU node.")  # fmt: skip
    if here and OmegaConf.select(cfg, "d2.SOLVER.AMP.ENABLED", default=False) and device != "cuda":
        found.append("mixed precision (+experiment=amp, d2.SOLVER.AMP.ENABLED) needs CUDA: detectron2's AMPTrainer "
                     "refuses to run on CPU. Drop it here, or run on a GPU node.")  # fmt: skip
    try:
        benchmark = benchmarks.of(cfg)
    except ValueError as e:
        return [*found, f"benchmark {cfg.benchmark.name}: {e}."]
    if cfg.trial.evaluator not in benchmark.EVALUATORS:
        found.append(f"trial.evaluator={cfg.trial.evaluator!r}: one of {', '.join(benchmark.EVALUATORS)} for "
                     f"{benchmarks.format_of(cfg)} datasets.")  # fmt: skip
    names = list(recipe.value(cfg, "DATASETS.TRAIN", ())) + list(recipe.value(cfg, "DATASETS.TEST", ()))
    num_classes = recipe.value(cfg, "MODEL.ROI_HEADS.NUM_CLASSES", 80)  # detectron2's default
    root, cache = Path(cfg.benchmark.datasets_root), Path(cfg.paths.cache)
    masks = recipe.value(cfg, "MODEL.MASK_ON", False) is True  # detectron2's default: boxes only
    key = (benchmark.__name__, str(root), repr(names), repr(num_classes), str(cache), masks)
    data = seen.get(key) if seen is not None else None
    if data is None:
        data = benchmark.problems(root, names, num_classes, cache, masks)
        if seen is not None:
            seen[key] = data
    found += data
    if no_weights(cfg):  # random init: no checkpoint to find, hash or convert, whatever its format says
        return found
    if cfg.pretrain.format == NO_FORMAT:
        found.append(f"pretrain {cfg.pretrain.name}: pretrain.format={NO_FORMAT} means no checkpoint (random init), "
                     "but pretrain.weights names a checkpoint: pass pretrain.weights=null to train from random "
                     f"init, or give the checkpoint's format ({', '.join(LAYOUTS)}).")  # fmt: skip
    elif cfg.pretrain.format not in LAYOUTS:
        found.append(f"pretrain.format={cfg.pretrain.format!r} is not one of {', '.join(LAYOUTS)}.")
    weights = _weights_problem(cfg)
    if weights:
        found.append(weights)
    elif cfg.pretrain.format in LAYOUTS and isinstance(cfg.pretrain.trust, bool):  # "no" must not unpickle in full
        found += _conversion_problems(cfg, seen)
    return found
