"""report.html: every output folder's report.md as one self-contained page.

handgrad's markdown is a small subset — ``#`` headings, ``-`` lists, pipe tables, fenced
code blocks, ``![alt](file.png)`` images, ``**bold**``, ``*em*``, ```code``` and
``[text](link)`` — so a converter of that subset fits here and needs no package. Images
are embedded as ``data:`` URIs (the page opens from anywhere, needs no folder beside it,
and makes no network request); links to another ``report.md`` point at its report.html.

``CSS`` is the one style of every handgrad page (reports and ``explain --format html``):
readable tables, a print stylesheet for A4 in which nothing is hidden.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

CSS = """
:root { --fg: #1b1b1b; --muted: #555; --line: #c8c8c8; --pos: #1f5fa8; --neg: #b3261e;
        --focus: #8a4b00; --bg-alt: #f4f4f4; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, sans-serif; color: var(--fg); max-width: 72rem;
       margin: 0 auto; padding: 1rem 1.5rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.25rem; margin-top: 2rem; } h3 { font-size: 1.05rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: .2rem .5rem; text-align: left;
         vertical-align: top; }
th { background: var(--bg-alt); }
tbody tr:nth-child(even) { background: #fafafa; }
.table-wrap { overflow-x: auto; }
td.num { white-space: nowrap; font-variant-numeric: tabular-nums; }
table.wide { font-size: 13px; } table.wide th, table.wide td { padding: .15rem .3rem; }
pre, code { font: 13px/1.4 ui-monospace, monospace; }
pre { background: var(--bg-alt); padding: .6rem; overflow-x: auto; border: 1px solid var(--line); }
img { max-width: 100%; height: auto; }
.lead { border: 3px solid var(--neg); padding: .5rem 1rem; margin: 1rem 0; }
.lead h2 { margin-top: .3rem; }
a:focus, button:focus, input:focus, [tabindex]:focus { outline: 3px solid var(--focus);
                                                      outline-offset: 2px; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
@media print {
  @page { size: A4; margin: 15mm; }
  body { max-width: none; padding: 0; font-size: 10pt; }
  .table-wrap, pre { overflow: visible; white-space: pre-wrap; }
  details { display: block; } details > * { display: block !important; }
  .no-print { display: none !important; }
  h2, h3 { break-after: avoid; } table, figure, img, svg { break-inside: avoid; }
  table { width: 100%; font-size: 7pt; } th, td { padding: .05rem .2rem; }
  a { color: inherit; text-decoration: none; }
}
"""

_INLINE = [  # applied to already-escaped text outside code spans, in this order
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![*\w])\*([^*\s][^*]*)\*(?![*\w])"), r"<em>\1</em>"),
]
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")   # kept on one line
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)\s*$")


_SAFE_TARGET = re.compile(r"(https?://[^\s\"'<>]+|[\w./#-]+)")


def _link(m: re.Match) -> str:
    """A markdown link as ``<a>``, for a relative path or an http(s) address only (a
    learner's text may hold any other: ``javascript:``, a quote that opens an attribute);
    anything else stays text."""
    raw = html.unescape(m.group(2))
    if not _SAFE_TARGET.fullmatch(raw):
        return m.group(0)
    target = re.sub(r"(^|/)report\.md$|(^|/)check\.md$",
                    lambda n: (n.group(1) or n.group(2) or "") + "report.html", raw)
    text = html.escape(target, quote=False) if m.group(1) == m.group(2) else m.group(1)
    return f'<a href="{html.escape(target, quote=True)}">{text}</a>'


_BACKSLASHED = re.compile(r"\\([!-/:-@\[-`{-~])")   # markdown's escape of a punctuation mark
_HELD = re.compile("\ue000(\\d+)\ue001")


def inline(text: str) -> str:
    """Escape, then the inline markup: backslash escapes (``\\_`` is a literal ``_``, as
    ``report.md_text`` writes a learner's text), code spans, bold, emphasis, links."""
    held: list[str] = []

    def hold(m: re.Match) -> str:   # a private-use placeholder no markup rule matches
        held.append(m.group(1))
        return f"\ue000{len(held) - 1}\ue001"

    text = _BACKSLASHED.sub(hold, re.sub("[\ue000\ue001]", "\ufffd", text))
    return _HELD.sub(lambda m: html.escape(held[int(m.group(1))], quote=False),
                     _marked_up(text))


def _marked_up(text: str) -> str:
    parts = re.split(r"(`[^`]+`)", text)       # no markup inside code spans
    out = []
    for p in parts:
        e = html.escape(p, quote=False)
        if p.startswith("`") and p.endswith("`") and len(p) > 1:
            out.append(f"<code>{e[1:-1]}</code>")
            continue
        for pattern, repl in _INLINE:
            e = pattern.sub(repl, e)
        out.append(_LINK.sub(_link, e))
    return "".join(out)


def image(path: Path, alt: str) -> str:
    """``<img>`` with the PNG inside it as a data: URI; alt text always present."""
    alt = alt or path.stem.replace("_", " ")
    if not path.is_file():
        return f'<p><em>(figure {html.escape(path.name)} missing)</em></p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    mime = "image/svg+xml" if path.suffix == ".svg" else "image/png"
    return (f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


WIDE_COLUMNS = 10   # a table with more columns gets a smaller type (the verdict has 14)


def _table(lines: list[str]) -> str:
    rows = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", ln.strip()[1:-1])]
            for ln in lines]
    head, body = rows[0], [r for r in rows[1:] if not all(re.fullmatch(r":?-+:?", c) for c in r)]
    # a header like weight_max_abs_diff may break after its underscores: a wide table then
    # fits its column on screen and on A4 (numbers never break)
    th = "".join(f'<th scope="col">{inline(c).replace("_", "_<wbr>")}</th>' for c in head)
    trs = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if _NUMBER.match(c) else
                                   f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body)
    wide = ' class="wide"' if len(head) > WIDE_COLUMNS else ""
    return (f'<div class="table-wrap"><table{wide}><thead><tr>{th}</tr></thead>'
            f"<tbody>{trs}</tbody></table></div>")


def markdown_to_html(text: str, folder: Path) -> str:
    """The body HTML of handgrad's markdown; images are read from ``folder``."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):   # closed by a fence at least as long (CommonMark)
            fence = re.match(r"`+", line).group()
            j = i + 1
            while j < len(lines) and not (lines[j].startswith(fence)
                                          and lines[j].strip("`") == ""):
                j += 1
            out.append("<pre>" + html.escape("\n".join(lines[i + 1:j]), quote=False) + "</pre>")
            i = j + 1
            continue
        block, j = _block(lines, i, folder)
        out.append(block)
        i = j
    return "\n".join(b for b in out if b)


def _block(lines: list[str], i: int, folder: Path) -> tuple[str, int]:
    """One block starting at line ``i`` (not a code fence): (its html, the next line)."""
    line = lines[i]
    if m := re.match(r"^(#{1,6})\s+(.*)$", line):
        n = len(m.group(1))
        return f"<h{n}>{inline(m.group(2))}</h{n}>", i + 1
    if m := _IMAGE.match(line):
        return image(folder / m.group(2), m.group(1)), i + 1
    if line.startswith("|"):
        j = i
        while j < len(lines) and lines[j].startswith("|"):
            j += 1
        return _table(lines[i:j]), j
    if _BULLET.match(line):     # an item's indented continuation lines belong to it
        j = i + 1
        while j < len(lines) and (_BULLET.match(lines[j]) or _CONTINUED.match(lines[j])):
            j += 1
        return _list(lines[i:j]), j
    if not line.strip():
        return "", i + 1
    j = i
    while j < len(lines) and lines[j].strip() and not re.match(r"^(#|\||```|!\[|\s*[-*] )",
                                                               lines[j]):
        j += 1
    return "<p>" + inline(" ".join(lines[i:max(j, i + 1)])) + "</p>", max(j, i + 1)


_BULLET = re.compile(r"^\s*[-*] ")
_CONTINUED = re.compile(r"^\s+\S")     # an indented line under a bullet


def _list(lines: list[str]) -> str:
    items: list[str] = []
    for ln in lines:
        if _BULLET.match(ln):
            items.append(_BULLET.sub("", ln))
        else:
            items[-1] += " " + ln.strip()
    return "<ul>" + "".join(f"<li>{inline(item)}</li>" for item in items) + "</ul>"


def page(title: str, body: str, extra_css: str = "", script: str = "") -> str:
    """A whole self-contained page: inline CSS, the body, optional inline script."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{CSS}{extra_css}</style></head>"
            f"<body>\n{body}\n{script}</body></html>\n")


def write_report_html(folder: str | Path, markdown: str | None = None,
                      lead: str = "") -> Path:
    """``folder/report.html`` from ``markdown`` (default: ``folder/report.md``); ``lead``:
    html shown first, in a box (a check's first mismatch)."""
    folder = Path(folder)
    if markdown is None:
        markdown = (folder / "report.md").read_text(encoding="utf-8")
    m = re.search(r"^#\s+(.*)$", markdown, re.M)
    body = markdown_to_html(markdown, folder)
    if lead:   # after the title, before everything else
        h1 = body.find("</h1>")
        body = body[:h1 + 5] + lead + body[h1 + 5:] if h1 >= 0 else lead + body
    path = folder / "report.html"
    path.write_text(page(m.group(1) if m else folder.name, body), encoding="utf-8")
    return path


def check_lead(text: str) -> str:
    """A check text's first mismatch, for the top of its page: the diagnosis lines and the
    chain rule with numbers ("The chain rule for …" up to ">>> yours"), or ""."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines)
                  if ln.startswith(("The chain rule for", "The update for"))), None)
    if start is None:
        return ""
    end = next((i for i in range(start, len(lines)) if ">>> yours" in lines[i]), len(lines) - 1)
    diag = next((i for i, ln in enumerate(lines) if ln.startswith("diagnosis (")), start)
    head = [ln[2:] for ln in lines[diag + 1:start] if ln.startswith("- ")]
    return ('<section class="lead" aria-labelledby="lead-h"><h2 id="lead-h">First mismatch: '
            + inline(lines[diag]) + "</h2>"
            + ("<ul>" + "".join(f"<li>{inline(h)}</li>" for h in head) + "</ul>" if head else "")
            + "<pre>" + html.escape("\n".join(lines[start:end + 1]), quote=False)
            + "</pre></section>")


def write_table_report(folder: str | Path, title: str, csvs: list[str],
                       images: list[str]) -> Path:
    """``folder/report.html`` for a folder without a report.md (the bug gallery): the
    title, its figures, then each CSV as a table."""
    import pandas as pd

    from experiments.output.report import markdown_table

    folder = Path(folder)
    md = [f"# {title}", ""] + [f"![{name}]({name})" for name in images]
    for name in csvs:
        md += ["", f"## {name}", "", markdown_table(pd.read_csv(folder / name))]
    return write_report_html(folder, "\n".join(md) + "\n")
