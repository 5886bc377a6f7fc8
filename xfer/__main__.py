"""``python -m xfer collect DIR [DIR ...]``: rebuild the results table from trials on disk."""

from __future__ import annotations

import argparse
from pathlib import Path

from xfer import results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xfer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("collect", help="table of every result.json under the folders (written into the first)")
    p.add_argument("dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        parser.error(f"not a folder: {', '.join(map(str, missing))}")
    rows, md = results.collect(args.dirs[0], args.dirs[1:])
    print(md, end="")
    print(f"{sum(r.n for r in rows)} trials in {len(rows)} settings; wrote {args.dirs[0] / 'table.md'} and table.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
