"""The html outputs: ``explain --format html`` and every folder's report.html.

The explain page must be one self-contained file (no URL to fetch: parsed with
html.parser, every src/href checked, no @import), hold exactly the numbers
``explain --param w1 --format csv`` prints, step through gradient descent (step k starts
from step k − 1's w⁺), and stay under 1 MB for the 2-2-2 and the seed case. Every
report.html (run, study, bug gallery, check) embeds its images as data: URIs and holds
its report.md's tables.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "learners"
F64 = 1e-12   # fixed float64 bound for hand vs autograd


class Page(HTMLParser):
    """Every src/href, the JSON blob, the <img> sources and the tables of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.links, self.imgs, self.tables, self.blob = [], [], [], None
        self._cell, self._in_blob, self._row = None, False, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "img":
            self.imgs.append(a)
        elif tag == "script" and a.get("type") == "application/json":
            self._in_blob = True
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
            self.tables[-1].append(self._row)
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "script":
            self._in_blob = False

    def handle_data(self, data):
        if self._in_blob:
            self.blob = json.loads(data)
        elif self._cell is not None:
            self._cell.append(data)


def assert_self_contained(text: str) -> Page:
    page = Page(text)
    external = [u for u in page.links if re.match(r"^(https?:)?//", u.strip(), re.I)]
    assert external == [], external
    assert "@import" not in text and not re.search(r"url\(\s*['\"]?(https?:)?//", text)
    assert all(img["src"].startswith("data:image/") for img in page.imgs), page.imgs
    assert all(img.get("alt") for img in page.imgs), "an image without alt text"
    return page


def explain_page(tmp_path, capsys, *args) -> tuple[str, Page]:
    out = tmp_path / "explain.html"
    assert main(["explain", *args, "--format", "html", "--out", str(out)]) == 0
    capsys.readouterr()
    text = out.read_text(encoding="utf-8")
    assert out.stat().st_size < 1_000_000, out.stat().st_size
    return text, assert_self_contained(text)


def explain_csv(capsys, *args) -> pd.DataFrame:
    assert main(["explain", *args, "--format", "csv"]) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out))


@pytest.fixture(scope="module")
def worked(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain") / "explain.html"
    assert main(["explain", "--format", "html", "--out", str(out)]) == 0
    return out


def test_worked_page_is_self_contained_and_small(worked):
    text = worked.read_text(encoding="utf-8")
    assert worked.stat().st_size < 1_000_000
    page = assert_self_contained(text)
    assert "http://" not in text and "https://" not in text   # not even in a comment
    assert set(page.blob["steps"]) == {"simultaneous", "sequential"}
    assert len(page.blob["steps"]["simultaneous"]) == 10        # the default --steps


def test_worked_numbers_are_the_csv_numbers(worked, capsys):
    """The panel's rows for w1 at step 1 are explain --param w1 --format csv's rows: same
    terms, same floats, printed to the text's 9 significant digits."""
    csv = explain_csv(capsys, "--param", "w1")
    want = csv[csv.section.isin(["gradient", "update"])]
    blob = Page(worked.read_text(encoding="utf-8")).blob
    rows = blob["steps"]["simultaneous"][0]["params"]["w1"]["rows"]
    assert [r[1] for r in rows] == list(want.term)
    for r, w in zip(rows, want.itertuples(index=False), strict=True):
        assert r[5] == w.value and r[2] == ("0" if w.value == 0 else format(w.value, ".9g"))
        if not pd.isna(w.autograd):
            assert r[6] == w.autograd
    grad = next(r for r in rows if r[1] == "∂E/∂w1")
    assert abs(grad[5] - grad[6]) <= F64 * abs(grad[6])          # hand vs autograd
    assert grad[2] == "0.000438567734"                           # the published 0.000438568


def test_steps_follow_gradient_descent(worked):
    """Step k + 1 starts from step k's w⁺ (and its update agrees with torch.optim.SGD's)."""
    steps = Page(worked.read_text(encoding="utf-8")).blob["steps"]["simultaneous"]
    for before, after in itertools.pairwise(steps):
        w_new = next(r for r in before["params"]["w1"]["rows"] if r[1] == "w⁺")
        w = next(r for r in after["params"]["w1"]["rows"] if r[1] == "w")
        assert w[5] == w_new[5]
        assert abs(w_new[5] - w_new[6]) <= F64 * abs(w_new[6])
    w1 = next(r for r in steps[1]["params"]["w1"]["rows"] if r[1] == "w")
    assert w1[2] == "0.149780716"                                 # w after 1 update


def test_worked_page_has_the_order_table(worked):
    page = Page(worked.read_text(encoding="utf-8"))
    order = next(t for t in page.tables if t[0][:4] == ["figure", "published", "simultaneous",
                                                         "sequential"])
    row = next(r for r in order if r[0] == "w1⁺ after 1 update")
    assert row[1:4] == ["0.149780716", "0.149780716", "0.149817639"]


def test_seed_page(tmp_path, capsys):
    """The seed case (3-4-1, N = 4): small, self-contained, the csv's numbers for one
    hidden weight summed over the batch."""
    _text, page = explain_page(tmp_path, capsys, "seed")
    csv = explain_csv(capsys, "seed", "--param", "layers.0.weight[1,2]")
    want = csv[csv.section.isin(["gradient", "update"])]
    rows = page.blob["steps"]["simultaneous"][0]["params"]["layers.0.weight[1,2]"]["rows"]
    assert [(r[1], r[5]) for r in rows] == list(zip(want.term, want.value, strict=True))
    assert list(page.blob["steps"]) == ["simultaneous"]


def test_big_network_is_drawn_as_blocks(tmp_path, capsys):
    text, page = explain_page(tmp_path, capsys, "digits", "--steps", "2")
    assert 'id="search"' in text and 'class="block"' in text
    lookup = page.blob["lookup"]["simultaneous"][0]
    assert "layers.0.weight[3,5]" in lookup and "autograd" in lookup["layers.0.weight[3,5]"]


def test_html_steps_are_bounded(capsys):
    assert main(["explain", "--format", "html", "--steps", "500"]) == 2
    assert "holds 1 … 50 steps" in capsys.readouterr().err


# -- report.html of every output folder ------------------------------------------------------

def md_tables(md: str) -> list[list[list[str]]]:
    """The pipe tables of a markdown text, separator rows dropped, markup stripped."""
    tables, cur = [], None
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            cells = [re.sub(r"[*`]", "", c.strip().replace("\\|", "|"))
                     for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                cur = cur if cur is not None else []
                cur.append([re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", c) for c in cells])
        elif cur is not None:
            tables.append(cur)
            cur = None
    return tables


def assert_report(folder: Path, md_name: str = "report.md") -> Page:
    html_text = (folder / "report.html").read_text(encoding="utf-8")
    page = assert_self_contained(html_text)
    md = (folder / md_name).read_text(encoding="utf-8")
    want = md_tables(md)
    assert want == page.tables[len(page.tables) - len(want):] or all(
        t in page.tables for t in want), "a table of report.md is missing"
    assert len(page.imgs) == len(re.findall(r"^!\[", md, re.M))
    return page


def test_run_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "xor", "--set", "epochs=30", "--out", str(out)]) == 0
    page = assert_report(out)
    assert page.imgs and (out / "report.html").stat().st_size < 3_000_000
    print(f"run report.html: {(out / 'report.html').stat().st_size} bytes")


def test_study_report(tmp_path):
    from experiments.teaching.studies import run_study
    out = run_study("learning-rate", tmp_path / "study", quick=True)
    assert assert_report(out).imgs


def test_bugs_report(tmp_path, capsys):
    out = tmp_path / "bugs"
    assert main(["bugs", "--out", str(out), "--steps", "2"]) == 0
    page = assert_self_contained((out / "report.html").read_text(encoding="utf-8"))
    assert len(page.imgs) == 1
    bugs = pd.read_csv(out / "bugs.csv")
    table = next(t for t in page.tables if t[0] == list(bugs.columns))
    assert len(table) == len(bugs) + 1


def test_check_report_opens_on_the_first_mismatch(tmp_path, capsys):
    out = tmp_path / "check"
    main(["check", str(EXAMPLES / "sigma_prime_of_activation.py"), "seed", "--steps", "2",
          "--no-plots", "--out", str(out)])
    capsys.readouterr()
    text = (out / "report.html").read_text(encoding="utf-8")
    assert_report(out, "check.md")
    lead = text.index('class="lead"')
    assert lead < text.index("<pre>", lead + 1) < text.index("At the initial point")
    box = text[lead:text.index("</section>", lead)]
    assert "The chain rule for" in box and "&gt;&gt;&gt; yours" in box and "∂E/∂" in box
    assert 'href="training/report.html"' in text
    assert_report(out / "training")


def test_backslash_escapes_show_the_character_not_the_backslash():
    """grades.md escapes a learner's text (``md_text``): the page shows the text as written,
    with no markup of theirs taking effect and no stray backslash (a Moodle folder name is
    full of underscores)."""
    from experiments.output.html import inline
    from experiments.teaching.grade.report import md_text

    text = "Ann Lee_101_assignsubmission_file_/hw3.py: *x* `y` <b>z</b> [a](javascript:b)"
    shown = inline(md_text(text))
    assert shown == ("Ann Lee_101_assignsubmission_file_/hw3.py: *x* `y` &lt;b&gt;z&lt;/b&gt; "
                     "[a](javascript:b)")
    assert "\\" not in shown and "<em>" not in shown and "<code>" not in shown
    assert inline("**bold** `a_b` a\\_b") == "<strong>bold</strong> <code>a_b</code> a_b"
    assert inline("\ue0000\ue001") == "\ufffd0\ufffd"   # a placeholder of the learner's
