"""Command-line glue for launch.py: seed ranges (a trial's folder is derived in ``xfer.store.identity``).

``seed=0-4`` is the user's shorthand; Hydra knows ``seed=range(0,5)`` and ``seed=0,1,2,3,4``. The
shorthand is rewritten before Hydra parses the command line, and refused when it is malformed or when
``-m`` is missing (a range must never quietly run one trial).
"""

from __future__ import annotations

import re
import sys

_SEED = re.compile(r"^(\+{0,2}seed)=(.*)$")
_RANGE = re.compile(r"^(\d+)-(\d+)$")
_HYDRA_SWEEP = re.compile(r"^(range|choice|interval|glob)\(|,")


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


def prepare_argv(argv: list[str]) -> list[str]:
    """launch.py's argv, ready for Hydra; a usage error exits with its message."""
    try:
        return expand_seed_ranges(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
