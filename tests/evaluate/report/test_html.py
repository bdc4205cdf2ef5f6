"""report.html: self-contained, escaped, with its plots; opened in real headless Chromium (DevTools protocol)."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from infopt.evaluate import RunResult, VariantResult, render_html, write_report

PLOTS = ("plot-pareto", "plot-size", "plot-latency")
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium)")

_PLOT_FACTS = """JSON.stringify(%s.map(id => {
  const f = document.getElementById(id), s = f && f.querySelector("svg"), r = s && s.getBoundingClientRect();
  return {id, svg: !!s, width: r ? r.width : 0, height: r ? r.height : 0,
          marks: s ? s.querySelectorAll("path, rect, use").length : 0, text: s ? s.textContent : ""};
}))"""


def _hostile(make_variant: Callable[..., VariantResult], make_run: Callable[..., RunResult]) -> RunResult:
    """User strings that would run or break markup if they were not escaped."""
    run = make_run(make_variant("<script>alert(1)</script>", 10.0, 100.0, 90.0, {"accuracy": 80.0}),
                   make_variant('x" onmouseover="alert(2)', 5.0, 200.0, 20.0, {"accuracy": 79.5}, status="kept"),
                   make_variant("$\\alpha$ & <b>", 4.0, 250.0, 18.0, {"accuracy": 79.0}, status="rejected"))
    run.model, run.data = "<img src=x onerror=alert(3)>", "../data/<evil>.csv"
    return run


def test_html_has_the_content_and_the_plots(optimized: RunResult) -> None:
    page = render_html(optimized)
    assert page.startswith("<!DOCTYPE html>")
    assert f"<strong>Recommendation:</strong> {optimized.recommendation}" in page
    for section in ("Machine and requirements", "Performance comparison", "Every variant", "Plots", "Decision log",
                    "What got worse", "Where this ran"):
        assert f"<h2>{section}</h2>" in page
    for pid in PLOTS:
        assert re.search(f'<figure id="{pid}"><svg ', page)
    assert page.count("<svg ") == 3
    assert "Pareto front" in page and "distill-l3+onnx-int8" in page
    assert '<tr class="chosen"><td>6</td><td class="wide">distill-l3+onnx-int8</td>' in page


def test_html_is_self_contained(optimized: RunResult) -> None:
    page = render_html(optimized)
    assert "<script" not in page and "<link rel=\"stylesheet\"" not in page and "@import" not in page
    refs = re.findall(r'(?:href|src)\s*=\s*"([^"]*)"', page) + re.findall(r"url\(([^)]*)\)", page)
    assert all(r.startswith(("#", "data:")) for r in refs), refs
    assert "http://" not in page.replace("http://www.w3.org/", "")
    assert "https://" not in page


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs.update(name for name, _ in attrs)


def test_every_user_string_is_escaped(make_variant: Callable[..., VariantResult],
                                      make_run: Callable[..., RunResult]) -> None:
    page = render_html(_hostile(make_variant, make_run))
    parsed = _Tags()
    parsed.feed(page)
    assert not parsed.tags & {"script", "img", "b", "evil"}, parsed.tags
    assert not [a for a in parsed.attrs if a.startswith("on")], parsed.attrs
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(3)&gt;" in page
    assert "x&quot; onmouseover=&quot;alert(2)" in page  # in the tables
    assert "$\\alpha$ &amp; &lt;b&gt;" in page  # in the plots too: no math rendering, no raw markup


def test_results_without_samples_say_so(mixed: RunResult) -> None:
    page = render_html(mixed)
    assert page.count("<svg ") == 2
    assert 'id="plot-latency-missing"' in page and "hold no latency samples" in page


def test_a_causal_lm_report_plots_perplexity(make_variant: Callable[..., VariantResult],
                                             make_run: Callable[..., RunResult]) -> None:
    run = make_run(make_variant("base", 40.0, 20.0, 540.0, {"perplexity": 12.5}, decode=30.0, samples_ms=[40.0, 41.0]),
                   make_variant("int4", 30.0, 25.0, 90.0, {"perplexity": 13.1}, decode=45.0, samples_ms=[30.0, 33.0]),
                   task="causal-lm", metric="perplexity")
    page = render_html(run)
    assert page.count("<svg ") == 3
    assert "perplexity (lower is better)" in page and "<th>decode tok/s</th>" in page


class _Page:
    """One headless Chromium tab driven over the DevTools protocol: what it requested, logged and threw."""

    def __init__(self, ws: Any, session: str) -> None:
        self.ws, self.session, self.ids = ws, session, itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 20.0) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}, "sessionId": self.session}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == msg_id:
                assert "error" not in msg, msg
                return dict(msg.get("result", {}))
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))))

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self.events.append(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                break

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, log errors, failed loads."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
                out.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p['args']]}")
            elif m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('text')}")
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log {p['entry']['level']}: {p['entry']['text']}")
            elif m == "Network.loadingFailed":
                out.append(f"load failed: {p.get('errorText')}")
        return out

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]


def _open_in_chromium(path: Path, profile: Path, expression: str) -> tuple[_Page, Any]:
    """Load `path` in a fresh headless Chromium; returns the tab (its events) and `expression` evaluated there."""
    from websockets.sync.client import connect

    proc = subprocess.Popen(
        [str(CHROMIUM), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--remote-debugging-port=0",
         "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            url = found.group(1) if found else None
        assert url, "chromium did not start its DevTools endpoint"
        with connect(url, max_size=None, open_timeout=20) as ws:
            ws.send(json.dumps({"id": 0, "method": "Target.createTarget", "params": {"url": "about:blank"}}))
            target = next(m for m in (json.loads(ws.recv(timeout=20)) for _ in range(50)) if m.get("id") == 0)
            ws.send(json.dumps({"id": -1, "method": "Target.attachToTarget",
                                "params": {"targetId": target["result"]["targetId"], "flatten": True}}))
            attached = next(m for m in (json.loads(ws.recv(timeout=20)) for _ in range(50)) if m.get("id") == -1)
            page = _Page(ws, attached["result"]["sessionId"])
            for domain in ("Runtime", "Log", "Network", "Page"):
                page.call(f"{domain}.enable")
            page.call("Page.navigate", {"url": path.resolve().as_uri()})
            page.wait_for("Page.loadEventFired")
            page.drain(0.5)
            value = page.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"]
            return page, value.get("value")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@needs_chromium
def test_chromium_opens_the_report_without_errors_and_draws_the_plots(optimized: RunResult, tmp_path: Path) -> None:
    write_report(optimized, tmp_path)
    page, value = _open_in_chromium(tmp_path / "report.html", tmp_path / "profile", _PLOT_FACTS % json.dumps(PLOTS))
    assert page.problems() == []
    assert page.requests() == [(tmp_path / "report.html").resolve().as_uri()]  # nothing else is fetched
    facts = {f["id"]: f for f in json.loads(value)}
    for pid in PLOTS:
        assert facts[pid]["svg"] and facts[pid]["width"] > 300 and facts[pid]["height"] > 150, facts[pid]
        assert facts[pid]["marks"] > 20, facts[pid]
    assert "Pareto front" in facts["plot-pareto"]["text"]
    assert "6  distill-l3+onnx-int8" in facts["plot-size"]["text"]


@needs_chromium
def test_the_chromium_check_sees_errors_and_requests(tmp_path: Path) -> None:
    """The check above can fail: a page that logs an error, throws and fetches a missing file is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                   '<img src="missing.png"><script>console.error("boom"); undefinedFunction();</script></body></html>')
    page, value = _open_in_chromium(bad, tmp_path / "profile", "document.querySelectorAll('svg').length")
    problems = page.problems()
    assert any("boom" in p for p in problems), problems
    assert any(p.startswith("exception:") for p in problems), problems
    assert any("missing.png" in r for r in page.requests())
    assert value == 0
