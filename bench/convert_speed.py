"""Time to convert a full-size checkpoint, per layout: median of repeats, relative to the torchvision layout.

    python bench/convert_speed.py [--depth 101] [--repeats 5]
Reading and writing are included (torch.load / pickle.dump of ~170 MB for R-101).
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xfer import smoke
from xfer.trial import converted  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depth", type=int, default=101, choices=(50, 101))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tv = {50: torchvision.models.resnet50, 101: torchvision.models.resnet101}[args.depth]().state_dict()
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for layout in ("torchvision", "moco", "openselfsup", "vissl", "msra"):
            src = Path(tmp) / f"{layout}.ckpt"
            obj = smoke.layouts.wrap(tv, layout)
            if layout in smoke.layouts.PICKLED:
                src.write_bytes(pickle.dumps(obj))
            else:
                torch.save(obj, src)
            runs = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                converted.convert_file(src, Path(tmp) / "out.pkl")
                runs.append(time.perf_counter() - t0)
            times[layout] = statistics.median(runs)
            size = src.stat().st_size / 2**20
            print(
                f"ResNet-{args.depth} {layout:12s} {size:6.0f} MiB: {times[layout]:.3f} s (median of {args.repeats}),"
                f" {times[layout] / times['torchvision']:.2f}x torchvision",
                flush=True,
            )


if __name__ == "__main__":
    main()
