"""``python -m xfer``: the stages of xfer one at a time.

- ``collect DIR [DIR ...] [--compare baseline|all] [--baseline NAME]``: the results table (Markdown, CSV, JSON,
  LaTeX, HTML) and plots, from disk; each method compared with its group's baseline, or every pair.
- ``status [DIR ...] [--watch]``: where every trial stands, from its files (and SLURM's queue).
- ``convert IN OUT``: turn a pretrained checkpoint into complete detectron2 ResNet weights.
- ``coco-subset``: write a low-data COCO training file (``coco_2017_train_0.1``'s) from train2017's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

SWEEP_IS = "a sweep's folder is <output_root>/<benchmark>, e.g. outputs/smoke"


def _has_trials(dirs: list[Path]) -> bool:
    """Whether any trial (handed over or finished) is under ``dirs``, as collect and status find them: a mistyped
    or too-shallow folder has none."""
    from xfer.report import results

    return bool(results.trial_folders(dirs))


def _collect(args: argparse.Namespace) -> int:
    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    if args.readme is not None and not args.readme.is_file():
        print(f"error: --readme {args.readme}: no such file", file=sys.stderr)
        return 2
    if not _has_trials(args.dirs):
        print(f"error: no trial under {', '.join(map(str, args.dirs))}: nothing to tabulate, nothing written ({SWEEP_IS})",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.out is not None:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file on the way (FileExistsError, NotADirectoryError), no permission
            print(f"error: --out {args.out}: cannot be a folder ({e.strerror or e}); give a folder to write the table "
                  "into", file=sys.stderr)  # fmt: skip
            return 2
    from xfer.report import collect, comparisons, paper

    problem = comparisons.option_problem(args.compare, args.baseline, "--compare", "--baseline")
    problem = problem or (paper.block_problem(args.readme) if args.readme is not None else "")
    if problem:  # before anything is written
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        report = collect.collect(args.dirs, args.out, plots=not args.no_plots, readme=args.readme,
                                 compare=args.compare, baseline=args.baseline, strict=True)  # fmt: skip
    except ValueError as e:  # a baseline no trial has
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only folder: each file is whole or as it was, the trials untouched
        print(f"error: could not write {e.filename or 'the tables'} ({e.strerror or e}); each file written is "
              "whole or keeps what it held, and the trial folders are untouched: free space or give --out a "
              "folder that can be written, then collect again", file=sys.stderr)  # fmt: skip
        return 1
    print(report.markdown, end="")
    print(f"{report.summary()}; wrote {', '.join(str(p) for p in report.written)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from xfer.report import status

    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    if not args.watch and not _has_trials(args.dirs):  # watching may start before a launch hands its trials over
        print(f"error: no trial under {', '.join(map(str, args.dirs))}: nothing to show ({SWEEP_IS})", file=sys.stderr)
        return 2
    status.show(args.dirs, watch=args.watch, every_s=args.every, on_scan=_report_refresher(args.dirs))
    return 0


def _report_refresher(dirs: list[Path], every_s: float = 30.0):
    """status' ``on_scan``: rewrite the sweeps' report.html now, then at most every ``every_s`` (a page of a large
    sweep takes a moment to build; the table refreshes every 2 s)."""
    from xfer.report import page

    last = [float("-inf")]

    def refresh(trials, statuses) -> None:
        if time.monotonic() - last[0] >= every_s:
            last[0] = time.monotonic()
            try:
                page.refresh(dirs, trials, statuses)
            except OSError as e:  # another user's sweep, a read-only copy: the table still shows
                print(f"report.html not refreshed: {e}", file=sys.stderr)

    return refresh


def _convert(args: argparse.Namespace) -> int:
    from xfer.trial import convert, converted  # torch: imported only for the command that needs it

    if args.format not in convert.LAYOUTS:
        print(f"error: --format {args.format}: one of {', '.join(convert.LAYOUTS)}", file=sys.stderr)
        return 2
    if args.depth and args.depth not in convert.BLOCKS:
        print(f"error: --depth {args.depth}: one of {', '.join(map(str, sorted(convert.BLOCKS)))}", file=sys.stderr)
        return 2
    if args.output.is_dir() or not args.output.parent.is_dir():
        where = "is a folder" if args.output.is_dir() else f"is in {args.output.parent}, which is not a folder"
        print(f"error: {args.output} {where}: give the path of the file to write (.safetensors or .pkl), in a "
              "folder that exists", file=sys.stderr)  # fmt: skip
        return 2
    try:
        report = converted.convert_file(args.input, args.output, args.format, args.prefix, args.trust, args.depth)
    except convert.ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the output cannot be written: no permission, a full disk
        print(f"error: {args.output}: could not be written ({e.strerror or e})", file=sys.stderr)
        return 2
    print(f"{args.output}: {report.summary()}; input convention: {report.convention or 'unknown'}")
    return 0


def _coco_subset(args: argparse.Namespace) -> int:
    from xfer.benchmarks import coco_subset

    try:
        path, sub = coco_subset.write(args.datasets, args.fraction, args.seed, args.force)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{path}: {len(sub['images'])} images, {len(sub['annotations'])} annotations, "
          f"{len(sub['categories'])} categories (fraction {args.fraction:g}, seed {args.seed})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xfer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("collect", help="the table of every trial under the folders, in every format, and plots")
    p.add_argument("dirs", nargs="+", type=Path, help="sweep folders (trials of several sweeps combine)")
    p.add_argument("--out", type=Path, default=None, help="where to write (default: the first folder)")
    p.add_argument("--readme", type=Path, default=None,
                   help="rewrite this Markdown file's <!-- START TABLE --> ... </tbody></table> block in place")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG/SVG plots")
    p.add_argument("--compare", default="baseline", help="baseline (default): each method against its group's "
                   "baseline; all: every pair of methods")  # fmt: skip
    p.add_argument("--baseline", default=None, metavar="NAME", help="the baseline's pretrain name (default: scratch, "
                   "else supervised, else supervised_tv)")  # fmt: skip
    p.set_defaults(run=_collect)
    p = sub.add_parser("status", help="every trial under the folders: queued, running, done, failed (from disk)")
    p.add_argument("dirs", nargs="*", type=Path, default=[Path("outputs")], help="sweep folders (default: outputs)")
    p.add_argument("--watch", action="store_true", help="keep the table current until Ctrl-C")
    p.add_argument("--every", type=float, default=2.0, help="seconds between refreshes with --watch")
    p.set_defaults(run=_status)
    p = sub.add_parser("convert", help="checkpoint -> detectron2 weights, strictly checked")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path, help="a .safetensors (data only, as xfer's trials read it) or a .pkl "
                                             "(detectron2's model-zoo pickle, for detectron2 elsewhere)")
    p.add_argument("--format", default="auto", help="layout of the input (default: detect)")
    p.add_argument("--prefix", default=None, help="strip this prefix to find torchvision-named ResNet keys")
    p.add_argument("--depth", type=int, help="insist on this ResNet depth")
    p.add_argument("--trust", action="store_true", help="unpickle fully; the file can run code: only if you trust it")
    p.set_defaults(run=_convert)
    p = sub.add_parser("coco-subset", help="a fraction of COCO train2017's images and their annotations, as a new "
                                           "instances file (benchmark=coco_fpn_1x_densecl_10pct reads the 0.1 one)")
    p.add_argument("--datasets", type=Path, default=Path(os.environ.get("DETECTRON2_DATASETS", "datasets")),
                   help="the folder that holds coco/ (default: $DETECTRON2_DATASETS, else datasets)")
    p.add_argument("--fraction", type=float, default=0.1, help="of the images (default: 0.1)")
    p.add_argument("--seed", type=int, default=0, help="of the uniform draw (default: 0)")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(run=_coco_subset)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:  # every file xfer writes is replaced whole: what was written stays, the rest as it was
        print(f"\ninterrupted: python -m xfer {args.command} stopped; each file it wrote is whole, the others keep "
              "what they held: run it again to finish", file=sys.stderr)  # fmt: skip
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
