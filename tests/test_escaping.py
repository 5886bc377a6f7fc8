"""Text from result files is shown as text in every output: labels and names come from other users' result.json files.

A finished trial written by hand with a hostile label and override. Oracles: Python's own HTML parser (which tags
and text the README block holds), the LaTeX escapes worked out by hand from the LaTeX manual's list of special
characters, and GitHub-flavoured Markdown's rule that an unescaped ``|`` separates cells.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from xfer.report import formats, paper, results
from xfer.store import files

HOSTILE = "<script>alert(1)</script> & 50% $x_1$ {a} ~b^ #c \\d | e"


class Parsed(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)

    def handle_data(self, data) -> None:
        self.text.append(data)


def hostile_rows(root: Path) -> list[results.Row]:
    folder = root / "smoke" / "r50_densecl" / "seed0"
    folder.mkdir(parents=True)
    record = {"setting": {"benchmark": "smoke", "backbone": "r50", "pretrain": "densecl", "overrides": f"x={HOSTILE}",
                          "label": f"Lab, {HOSTILE}"}, "seed": 0, "trials_expected": 1, "published": None,
              "metric_names": ["AP50", "AP", "AP75"], "metrics": {"AP50": 50.0, "AP": 30.0, "AP75": 30.0},
              "run": {"wall_time_s": 1.0, "max_iter": 10}}  # fmt: skip
    files.write_json_atomic(folder / "result.json", record)
    return results.summarize(results.read_trials([root]))


def test_the_readme_block_shows_a_label_as_text(tmp_path):
    block = paper.seed_html(hostile_rows(tmp_path))
    parsed = Parsed(block)
    assert "script" not in parsed.tags and set(parsed.tags) <= {"th", "tr", "td", "table", "thead", "tbody"}
    assert any(HOSTILE in text for text in parsed.text)  # the label, character for character, as the text shown


def test_latex_escapes_every_special_character(tmp_path):
    # by hand, per character: \ -> \textbackslash{}, the other specials with a backslash, ~ ^ < > as text commands
    assert paper._tex(HOSTILE) == (
        r"\textless{}script\textgreater{}alert(1)\textless{}/script\textgreater{} \& 50\% \$x\_1\$ \{a\} "
        r"\textasciitilde{}b\textasciicircum{} \#c \textbackslash{}d | e")
    row = paper.latex(hostile_rows(tmp_path))
    assert "<script>" not in row and r"\textless{}script" in row


def test_a_markdown_row_keeps_its_cells(tmp_path):
    text = formats.markdown(hostile_rows(tmp_path), [])
    header, _, row = text.splitlines()[:3]
    cells = lambda line: len(re.findall(r"(?<!\\)\|", line))  # noqa: E731  GFM: an unescaped | separates cells
    assert cells(row) == cells(header) and "<script" not in text
