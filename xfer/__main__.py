"""``python -m xfer``: the stages of xfer one at a time.

- ``collect DIR [DIR ...]``: rebuild the results table from the trials on disk.
- ``convert IN OUT``: turn a pretrained checkpoint into complete detectron2 ResNet weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xfer import convert, results


def _collect(args: argparse.Namespace) -> int:
    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    rows, md = results.collect(args.dirs[0], args.dirs[1:])
    print(md, end="")
    print(f"{sum(r.n for r in rows)} trials in {len(rows)} settings; wrote {args.dirs[0] / 'table.md'} and table.csv")
    return 0


def _convert(args: argparse.Namespace) -> int:
    try:
        report = convert.convert_file(args.input, args.output, args.format, args.prefix, args.trust)
    except convert.ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.depth and report.depth != args.depth:
        args.output.unlink()
        print(f"error: {args.input} is a ResNet-{report.depth}, not ResNet-{args.depth}", file=sys.stderr)
        return 2
    print(f"{args.output}: {report.summary()}; input convention: {report.convention or 'unknown'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xfer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("collect", help="table of every result.json under the folders (written into the first)")
    p.add_argument("dirs", nargs="+", type=Path)
    p.set_defaults(run=_collect)
    p = sub.add_parser("convert", help="checkpoint -> detectron2 weights (.pkl), strictly checked")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--format", default="auto", choices=convert.LAYOUTS, help="layout of the input (default: detect)")
    p.add_argument("--prefix", default=None, help="strip this prefix to find torchvision-named ResNet keys")
    p.add_argument("--depth", type=int, choices=sorted(convert.BLOCKS), help="insist on this ResNet depth")
    p.add_argument("--trust", action="store_true", help="unpickle fully; the file can run code: only if you trust it")
    p.set_defaults(run=_convert)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
