"""Install detectron2 v0.6's pure-Python sources into the running interpreter's environment.

detectron2 is not on PyPI. On GPU clusters build it from source (see README). On machines that only
reach PyPI, the ``pb1-detectron2==0.6`` sdist carries detectron2 v0.6's Python sources unchanged but no
C++ sources, so ``pip install pb1-detectron2`` fails at the build, and ``pip download`` fails too (its
metadata declares a direct-URL extra that pip refuses). This script therefore:

1. reads the package index's PEP 503 page for ``pb1-detectron2`` (the index pip is configured with),
2. downloads the sdist once into a cache folder and checks its pinned sha256,
3. builds a pure wheel named ``detectron2`` from its ``detectron2/`` package alone and pip-installs it
   (so ``pip uninstall detectron2`` works).

xfer's ``xfer.d2compat`` then supplies what v0.6 lacks at run time (a stand-in for ``detectron2._C``,
NumPy and Pillow aliases). Idempotent: an importable detectron2 is left alone. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

PROJECT = "pb1-detectron2"
VERSION = "0.6"
SDIST = f"{PROJECT}-{VERSION}.tar.gz"
SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
DEFAULT_INDEX = "https://pypi.org/simple"

PYPROJECT = f"""\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "detectron2"
version = "{VERSION}"
description = "detectron2 v{VERSION} Python sources from the {PROJECT} sdist, without C++ ops"
requires-python = ">=3.8"

[tool.setuptools.packages.find]
include = ["detectron2*"]

[tool.setuptools.package-data]
"*" = ["*.yaml", "*.json"]
"""


class _Links(html.parser.HTMLParser):
    """Collects the href of every <a> on a PEP 503 project page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def index_url() -> str:
    """The index pip uses here: PIP_INDEX_URL, else pip's configured index-url, else PyPI."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else DEFAULT_INDEX


def sdist_url(index: str) -> str:
    page = f"{index.rstrip('/')}/{PROJECT}/"
    with urllib.request.urlopen(page, timeout=60) as resp:
        parser = _Links()
        parser.feed(resp.read().decode())
    for href in parser.hrefs:
        url = urllib.parse.urljoin(page, href)
        if urllib.parse.urlparse(url).path.endswith("/" + SDIST):
            return url.split("#")[0]
    raise SystemExit(f"error: {SDIST} is not listed on {page}")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_sdist(cache: Path) -> Path:
    """Download the sdist into ``cache`` unless a copy with the pinned hash is already there."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / SDIST
    if target.exists() and sha256(target) == SHA256:
        return target
    url = sdist_url(index_url())
    print(f"downloading {url}")
    tmp = target.with_suffix(".part")
    with urllib.request.urlopen(url, timeout=300) as resp, tmp.open("wb") as out:
        shutil.copyfileobj(resp, out)
    got = sha256(tmp)
    if got != SHA256:
        tmp.unlink()
        raise SystemExit(f"error: {SDIST} has sha256 {got}, expected {SHA256}; refusing to install it")
    tmp.replace(target)
    return target


def install(sdist: Path) -> None:
    """Build a wheel from the sdist's ``detectron2/`` package only and pip-install it."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prefix = f"{PROJECT}-{VERSION}/detectron2/"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
            tar.extractall(root / "src", members=members, filter="data")
        src = root / "src" / f"{PROJECT}-{VERSION}"
        (src / "pyproject.toml").write_text(PYPROJECT)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(src)],
            check=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(".cache"), help="where the sdist is kept")
    parser.add_argument("--force", action="store_true", help="reinstall even if detectron2 imports")
    args = parser.parse_args()
    if importlib.util.find_spec("detectron2") is not None and not args.force:
        print("detectron2 is already installed; nothing to do (use --force to reinstall v0.6)")
        return
    install(fetch_sdist(args.cache))
    print(f"installed detectron2 {VERSION} (Python sources from {SDIST}, sha256 verified)")


if __name__ == "__main__":
    main()
