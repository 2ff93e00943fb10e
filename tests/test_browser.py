"""explain.html in a real browser: headless Chromium, driven through chromedriver.

The page for the 2-2-2 is opened from the file system; a weight is selected with the
keyboard only (Tab to it, Enter), the panel's numbers are read back from the DOM and must
be ``explain --param w1 --format csv``'s to the 9 significant digits the text prints; one
step later the panel starts from the w⁺ of the step before. A screenshot is saved under
tmp_path (its path printed: ``pytest -s`` shows it).

chromedriver speaks the W3C WebDriver protocol (JSON over HTTP), so a dozen lines of
urllib drive it: no package needed. Debian: ``apt-get install chromium chromium-driver``.
Without them the tests skip and say so.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1200,1500"]
TAB, SHIFT, ENTER = "\ue004", "\ue008", "\ue007"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason=f"no headless browser here (chromium: {CHROMIUM}, chromedriver: {CHROMEDRIVER}); "
           f"on Debian: apt-get install -y chromium chromium-driver")


class Browser:
    """The few WebDriver commands the test needs, over chromedriver's HTTP API."""

    def __init__(self, profile: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.call("GET", "/status")["ready"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail("chromedriver did not come up within 20 s")
            time.sleep(0.1)
        caps = {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={profile}"]}}
        self.session = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})[
            "sessionId"]

    def call(self, method: str, path: str, body: dict | None = None):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["value"]

    def cmd(self, method: str, path: str, body: dict | None = None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def js(self, script: str):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": []})

    def keys(self, *keys: str) -> None:
        """Press ``keys`` in order (a tuple entry = a chord: its keys held together)."""
        actions = []
        for k in keys:
            chord = k if isinstance(k, tuple) else (k,)
            actions += [{"type": "keyDown", "value": c} for c in chord]
            actions += [{"type": "keyUp", "value": c} for c in reversed(chord)]
        self.cmd("POST", "/actions", {"actions": [{"type": "key", "id": "kb",
                                                    "actions": actions}]})

    def close(self) -> None:
        try:
            self.cmd("DELETE", "")
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=10)


ACTIVE = "const a = document.activeElement; return a && a.dataset ? (a.dataset.param || '') " \
         "+ '|' + a.tagName.toLowerCase() : '';"
PANEL = """return Array.from(document.querySelectorAll('#panel-rows tr')).map(tr =>
  Array.from(tr.children).map(td => td.textContent));"""


def tab_to(b: Browser, target: str, limit: int = 60) -> None:
    """Tab through the page until the focused element is ``target`` ('w1|g': the w1 edge)."""
    for _ in range(limit):
        b.keys(TAB)
        if b.js(ACTIVE) == target:
            return
    pytest.fail(f"{target} never got the keyboard focus in {limit} Tabs")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    out = folder / "explain.html"
    assert main(["explain", "--format", "html", "--out", str(out)]) == 0
    start = time.monotonic()
    b = Browser(folder / "profile")
    print(f"\nchromium + chromedriver up in {time.monotonic() - start:.1f} s")
    b.cmd("POST", "/url", {"url": out.as_uri()})
    yield b, folder
    b.close()


def test_keyboard_selection_shows_the_csv_numbers(page, capsys):
    b, _ = page
    tab_to(b, "w6|g")                      # the w6 edge of the drawing, then Enter
    b.keys(ENTER)
    assert b.js("return document.getElementById('panel-title').textContent").startswith("w6")
    tab_to(b, "w1|button")                 # w1 in the parameter list
    b.keys(ENTER)
    assert b.js("return document.getElementById('panel-title').textContent").startswith("w1")
    shown = b.js(PANEL)
    assert main(["explain", "--param", "w1", "--format", "csv"]) == 0
    csv = pd.read_csv(io.StringIO(capsys.readouterr().out))
    want = csv[csv.section.isin(["gradient", "update"])]
    assert [r[1] for r in shown] == list(want.term)
    for (_, term, value, autograd, _), w in zip(shown, want.itertuples(index=False),
                                                strict=True):
        assert value == ("0" if w.value == 0 else format(w.value, ".9g")), term
        assert float(value) == pytest.approx(w.value, rel=5e-9, abs=1e-300)
        if not pd.isna(w.autograd):
            assert float(autograd) == pytest.approx(w.autograd, rel=5e-9, abs=1e-300)
    grad = next(r for r in shown if r[1] == "∂E/∂w1")
    assert abs(float(grad[2]) - float(grad[3])) <= 1e-12 + 5e-9 * abs(float(grad[3]))


def test_one_step_later(page):
    b, folder = page
    before = {r[1]: r for r in b.js(PANEL)}
    nxt = b.cmd("POST", "/element", {"using": "css selector", "value": "#next"})
    b.cmd("POST", f"/element/{next(iter(nxt.values()))}/click", {})
    label = b.js("return document.getElementById('step-label').textContent")
    assert label.startswith("step 2 of 10"), label
    after = {r[1]: r for r in b.js(PANEL)}
    assert after["w"][2] == before["w⁺"][2] == "0.149780716"     # the published w1⁺
    assert after["w⁺"][2] == after["w⁺"][3]                       # hand = torch.optim.SGD
    assert float(after["w⁺"][2]) < float(after["w"][2])           # ∂E/∂w1 > 0: w1 falls
    shot = folder / "explain-step2.png"
    shot.write_bytes(base64.b64decode(b.cmd("GET", "/screenshot")))
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
    print(f"\nscreenshot: {shot}")


def test_order_switch_shows_the_sequential_gradient(page):
    """The 2-2-2's switch: the sequential order's ∂E/∂w1 (through the NEW w5, w7) differs
    from the simultaneous one, as its column in the published-figures table says."""
    b, folder = page
    prev = b.cmd("POST", "/element", {"using": "css selector", "value": "#prev"})
    b.cmd("POST", f"/element/{next(iter(prev.values()))}/click", {})
    radio = b.cmd("POST", "/element", {"using": "css selector",
                                        "value": "input[name=order][value=sequential]"})
    b.cmd("POST", f"/element/{next(iter(radio.values()))}/click", {})
    grad = next(r for r in b.js(PANEL) if r[1] == "∂E/∂w1")
    assert grad[2] == "0.000364722878" and grad[3] == "0.000438567734"
    on = b.js("return Array.from(document.querySelectorAll('.order-table td.on'))"
              ".map(td => td.dataset.order)")
    assert on and set(on) == {"sequential"}
    pdf = folder / "explain.pdf"      # the print stylesheet: every parameter, A4
    pdf.write_bytes(base64.b64decode(b.cmd("POST", "/print", {"page": {
        "width": 21.0, "height": 29.7}})))
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 10_000
    print(f"\nprinted: {pdf}")


def test_arrow_keys_move_the_selection(page):
    b, _ = page
    tab_to(b, "w1|g")
    b.keys(ENTER, "\ue014", "\ue014")          # Enter on w1, then ArrowRight twice
    assert b.js(ACTIVE) == "w3|g"
    assert b.js("return document.getElementById('panel-title').textContent").startswith("w3")


# -- ready to project: labels, size, large networks ------------------------------------------

BOXES = """const r = (el) => { const b = el.getBoundingClientRect();
  return [b.left, b.top, b.right, b.bottom]; };
const shown = (el) => getComputedStyle(el).display !== 'none' && el.textContent;
return {labels: Array.from(document.querySelectorAll('svg .tag'))
          .filter((t) => getComputedStyle(t).display !== 'none')
          .map((t) => [t.dataset.for, r(t.querySelector('.label'))]),
        nodes: Array.from(document.querySelectorAll('svg .unit circle')).map(r),
        texts: Array.from(document.querySelectorAll('svg .unit text[id]')).filter(shown)
          .map(r)};"""


def _overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser2")
    b = Browser(folder / "profile")
    b.cmd("POST", "/window/rect", {"width": 1366, "height": 768})   # a projector's screen
    yield b, folder
    b.close()


@pytest.mark.parametrize("name, args, edges", [("222", [], 8), ("341", ["seed"], 16)])
def test_edge_labels_never_overlap_at_any_step(browser, name, args, edges):
    """Every edge of the 2-2-2 and the 3-4-1 is labelled, and at every step of the page no
    two labels' boxes overlap, nor a label a neuron or its net/out text."""
    b, folder = browser
    out = folder / f"{name}.html"
    assert main(["explain", *args, "--format", "html", "--out", str(out)]) == 0
    b.cmd("POST", "/url", {"url": out.as_uri()})
    steps = int(b.js("return document.getElementById('step-range').max")) + 1
    for k in range(steps):
        b.js(f"const s = document.getElementById('step-range'); s.value = {k}; "
             "s.dispatchEvent(new Event('input'));")
        got = b.js(BOXES)
        labels = got["labels"]
        assert len(labels) == edges, (k, len(labels))
        for i, (p, box) in enumerate(labels):
            for q, other in labels[i + 1:]:
                assert _overlap(box, other) < 1, f"step {k}: labels {p} and {q} overlap"
            for other in got["nodes"] + got["texts"]:
                assert _overlap(box, other) < 1, f"step {k}: label {p} covers a neuron's text"


def test_the_341_drawing_fits_a_1366x768_screen(browser):
    b, folder = browser
    out = folder / "341.html"
    if not out.exists():
        assert main(["explain", "seed", "--format", "html", "--out", str(out)]) == 0
    b.cmd("POST", "/url", {"url": out.as_uri()})
    w, h, W, H = b.js("const r = document.querySelector('svg.net').getBoundingClientRect(); "
                      "return [r.width, r.height, innerWidth, innerHeight];")
    assert w <= W and h <= H, (w, h, W, H)


def test_a_large_network_is_drawn_as_shaded_bundles(browser):
    """digits (64-30-10): layer blocks and one bundle per weight matrix, each with its mean
    |∂E/∂w| written on it and shaded by it (the larger mean darker)."""
    b, folder = browser
    out = folder / "digits.html"
    assert main(["explain", "digits", "--format", "html", "--out", str(out), "--steps",
                 "2"]) == 0
    b.cmd("POST", "/url", {"url": out.as_uri()})
    bundles = b.js("return Array.from(document.querySelectorAll('svg .bundle')).map((g) => "
                   "[g.querySelector('.mean').textContent, "
                   "Number(g.querySelector('polygon').style.fillOpacity)]);")
    assert len(bundles) == 2
    means = [float(text.rsplit(" ", 1)[1]) for text, _ in bundles]
    assert all(text.startswith("mean |∂E/∂w| ") for text, _ in bundles)
    shades = [shade for _, shade in bundles]
    assert (means[0] < means[1]) == (shades[0] < shades[1]) and max(shades) > min(shades)


def _pdf_text(pdf: bytes) -> str:
    """The PDF's text, ligatures unfolded (ﬀ -> ff) and words broken after an underscore
    (a wrapped table header) joined again."""
    import unicodedata
    pypdf = pytest.importorskip("pypdf", reason="pypdf (the [test] extra) reads the PDF")
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    return re.sub(r"_\s*\n\s*", "_", unicodedata.normalize("NFKC", text))


def test_report_html_prints_every_verdict_column_on_a4(browser):
    """report.html printed to A4 keeps every column of the verdict table (it lost four), and
    its Definitions are one list (they fell apart into paragraphs)."""
    b, folder = browser
    out = folder / "run"
    assert main(["run", "seed", "--set", "epochs=20", "--out", str(out), "--quiet"]) == 0
    b.cmd("POST", "/url", {"url": (out / "report.html").as_uri()})
    items = b.js("const h = Array.from(document.querySelectorAll('h2'))"
                 ".find((e) => e.textContent === 'Definitions'); const n = h.nextElementSibling;"
                 " const after = n.nextElementSibling;"
                 " return [n.tagName, n.children.length, after ? after.tagName : 'end'];")
    assert items[0] == "UL" and items[1] >= 10 and items[2] in ("H2", "end"), items
    pdf = base64.b64decode(b.cmd("POST", "/print", {"page": {"width": 21.0, "height": 29.7}}))
    text = _pdf_text(pdf)
    table = text[text.index("Verdict"):text.index("Diagnosis")]
    header = pd.read_csv(out / "summary.csv", nrows=0).columns
    missing = [c for c in header if c not in table]
    assert not missing, f"printed verdict table lacks {missing}"


def test_the_explain_page_prints_without_its_controls(browser):
    b, folder = browser
    out = folder / "222.html"
    if not out.exists():
        assert main(["explain", "--format", "html", "--out", str(out)]) == 0
    b.cmd("POST", "/url", {"url": out.as_uri()})
    text = _pdf_text(base64.b64decode(b.cmd("POST", "/print", {"page": {
        "width": 21.0, "height": 29.7}})))
    assert "next step" not in text and "previous step" not in text
    assert "w1 0.15" in text                       # the drawing's labels are printed
