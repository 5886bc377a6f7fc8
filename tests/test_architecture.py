"""The README's architecture against the code: its tree names every module, and each folder imports only from
the folders listed below it (what ``import`` statements say, read with Python's own parser)."""

from __future__ import annotations

import ast
import re

from tests.conftest import REPO

PACKAGE = REPO / "xfer"


def tree() -> str:
    section = (REPO / "README.md").read_text().split("## Architecture", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def layers() -> list[str]:
    """The README's folders of xfer/, top to bottom (``launch``, ..., ``d2compat`` for ``xfer/d2compat.py``)."""
    return re.findall(r"^xfer/(\w+)(?:/|\.py)", tree(), flags=re.M)


def imported(path) -> set[str]:
    """The parts of xfer (``xfer.<part>`` or ``from xfer import <part>``) that ``path`` imports, wherever it does."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "xfer":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("xfer.")}
    return found


def test_every_module_is_in_the_readmes_tree():
    text = tree()
    modules = [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" and "__pycache__" not in p.parts]
    missing = [str(p.relative_to(REPO)) for p in modules if not re.search(rf"\b{re.escape(p.name)}", text)]
    assert not missing, missing


def test_a_folder_imports_only_from_the_folders_below_it():
    order = layers()
    folders = [p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert sorted(order[:-1]) == sorted(folders) and order[-1] == "d2compat", order
    upward = []
    for name in folders:
        below = set(order[order.index(name) + 1 :])
        for path in (PACKAGE / name).glob("*.py"):
            upward += [f"{path.relative_to(REPO)} imports xfer.{part}" for part in imported(path) - {name}
                       if part in order and part not in below]  # fmt: skip
    assert not upward, upward
