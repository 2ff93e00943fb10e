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
