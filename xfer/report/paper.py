"""The results table for the paper: LaTeX (booktabs) and the seed README's HTML table, which :func:`rewrite_block`
can put in place of the block between ``<!-- START TABLE -->`` and ``</tbody></table>`` of a Markdown file,
leaving the rest of that file byte for byte as it was. Rendered from the same rows as the other formats
(``xfer.report.formats``), with the seed's row names (:func:`display_name`).
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

from xfer.report.formats import all_names, metric_tables, number
from xfer.report.results import Row
from xfer.store.files import write_text_atomic

START, END = "<!-- START TABLE -->", "</tbody></table>"

# LaTeX's special characters (and < >, which its default font encoding prints as other glyphs), each as text
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
        "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}"}  # fmt: skip


def _tex(text: str) -> str:
    """``text`` as LaTeX prints it literally, in one pass (so that one escape's braces are not escaped again)."""
    return re.sub(r"[\\&%$#_{}~^<>]", lambda m: _TEX[m[0]], text)


def display_name(row: Row) -> str:
    """The seed README's row name: the pretrain's label with the backbone after its first part
    (``ImageNet-1M, R50, DenseCL, 200ep``), plus any other override."""
    label = row.label or row.setting.pretrain
    head, _, rest = label.partition(", ")
    name = f"{head}, {row.setting.backbone.upper()}" + (f", {rest}" if rest else "")
    return name + (f" ({row.setting.overrides})" if row.setting.overrides else "")


def tex_metric(name: str) -> str:
    """A metric's name as papers set it: ``AP50`` -> ``AP$_{50}$``, ``box_APs`` -> ``box\\_AP$_{s}$``; a name
    not ending in AP with a threshold or size is only escaped."""
    match = re.fullmatch(r"(.*AP)(\d+|[sml])", name)
    return f"{_tex(match[1])}$_{{{match[2]}}}$" if match else _tex(name)


def latex(rows: list[Row]) -> str:
    """A booktabs tabular per list of metric names (:func:`metric_tables`): mean ± std per metric (± omitted
    for one trial), n per row."""
    out: list[str] = []
    for names, members in metric_tables(rows):
        out += ([""] if out else []) + [rf"\begin{{tabular}}{{l{'c' * (len(names) + 1)}}}", r"\toprule",
                                        rf"Pretrain & $n$ & {' & '.join(map(tex_metric, names))} \\", r"\midrule"]  # fmt: skip
        for r in members:
            if not r.n:
                continue
            cells = [number(s.mean) + (f" $\\pm$ {s.std:.2f}" if s.std is not None else "") for s in
                     (r.stats[m] for m in names)]  # fmt: skip
            out.append(f"{_tex(display_name(r))} & {r.n} & {' & '.join(cells)} \\\\")
        out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def seed_html(rows: list[Row]) -> str:
    """The seed README's table block, from ``<!-- START TABLE -->`` to ``</tbody></table>``: the mean of
    each finished setting, two decimals. One table (a README holds one block, and :func:`rewrite_block` finds
    its end by the first ``</tbody></table>``): a column per metric of any row, "—" where a row has none."""
    names = tuple(dict.fromkeys(m for r in rows if r.n for m in r.metric_names)) or all_names(rows)
    out = [START, "<!-- TABLE HEADER -->", *(f'<th valign="bottom">{escape(h)}</th>' for h in ("pretrain", *names)),
           "<!-- TABLE BODY -->"]  # fmt: skip
    for r in rows:
        if r.n:
            out.append(f'<tr><td align="left">{escape(display_name(r))}</td>')
            out += [f'<td align="center">{number(r.stats[m].mean)}</td>' if m in r.stats else '<td align="center">—</td>'
                    for m in names]  # fmt: skip
            out.append("</tr>")
    out.append(END)
    return "\n".join(out)


def block_problem(path: Path) -> str:
    """Why ``path`` has no table block for :func:`rewrite_block` to replace (naming the two markers), or ""."""
    text = Path(path).read_text()
    start = text.find(START)
    if start < 0 or text.find(END, start) < 0:
        return f"{path}: no table block to rewrite (it needs a line {START} and, after it, {END})."
    return ""


def rewrite_block(path: Path, block: str) -> None:
    """Put ``block`` in place of the file's ``<!-- START TABLE -->`` ... ``</tbody></table>``; nothing else
    changes. A file without that block is an error that names the two markers. The file is the user's own (a
    paper's README): it is replaced whole or not at all (a full disk must not cut it), a link stays a link to it,
    and it keeps its permissions."""
    problem = block_problem(path)
    if problem:
        raise ValueError(problem)
    target = Path(path).resolve()
    text = target.read_text()
    start = text.find(START)
    end = text.find(END, start)
    mode = target.stat().st_mode
    write_text_atomic(target, text[:start] + block + text[end + len(END) :])
    target.chmod(mode)
