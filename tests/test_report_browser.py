"""The report's index.html in a real browser: headless Chromium (Debian's ``chromium``),
driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: no WebDriver,
no websocket client, no new dependency). Checks that every <img> loaded (naturalWidth >
0), that the top-10 table is there, and that the page made no network request (every
request the browser saw is ``file:`` or ``data:``; the browser runs with networking
features off and an unreachable proxy, so a remote fetch could not succeed anyway).

Set-up installs Chromium with ``apt-get install -y chromium`` when it is missing and the
tests run as root with apt available; otherwise the tests are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from tests.synthetic_store import rich_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--proxy-server=127.0.0.1:9",  # nothing listens there: any remote fetch fails fast
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-pipe",
]


def _skip_loudly(reason: str) -> None:
    message = f"CHROMIUM BROWSER TEST SKIPPED: {reason}"
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


def _install_chromium() -> str:
    """Path of a Chromium binary, installing Debian's package if needed and possible."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found:
        return found
    if os.geteuid() != 0:
        _skip_loudly(
            "`chromium` is not installed and the tests do not run as root, so set-up cannot "
            "`apt-get install -y chromium`; install it (Debian: apt-get install chromium) to run them."
        )
    if not shutil.which("apt-get"):
        _skip_loudly("`chromium` is not installed and there is no apt-get to install it with.")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:  # stale package lists: update once, then retry
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=600)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=1200)
    found = shutil.which("chromium")
    if result.returncode != 0 or not found:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        _skip_loudly(f"`apt-get install -y chromium` failed (exit {result.returncode}): {' | '.join(tail)}")
    return found


class _DevTools:
    """A minimal Chrome DevTools Protocol client over --remote-debugging-pipe (fds 3/4,
    NUL-separated JSON messages)."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds() -> None:  # in the child: its fd 3 reads our commands, fd 4 writes replies
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=fds,
            pass_fds=(3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer, self._next_id, self.events = b"", 0, []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_chrome], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60):
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):  # it may already be gone
            self.call("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


_PAGE_STATE = """JSON.stringify({
  images: Array.from(document.images).map(i => ({src: i.getAttribute('src'), complete: i.complete,
                                                  width: i.naturalWidth})),
  topRows: document.querySelectorAll('#top-table tbody tr').length,
  title: document.title,
})"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    binary = _install_chromium()
    root = tmp_path_factory.mktemp("browser")
    result = rich_report()[1]  # the report the other report tests read: built once per session
    devtools = _DevTools(binary, root / "profile")
    try:
        target = devtools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = devtools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page.enable", "Network.enable", "Runtime.enable"):
            devtools.call(domain, session=session)
        devtools.call("Page.navigate", {"url": result.index_html.as_uri()}, session=session)
        devtools.wait_for("Page.loadEventFired")
        state = devtools.call(
            "Runtime.evaluate", {"expression": _PAGE_STATE, "returnByValue": True}, session=session
        )
        requests = [
            e["params"]["request"]["url"]
            for e in devtools.events
            if e.get("method") == "Network.requestWillBeSent"
        ]
    finally:
        devtools.close()
    return result, json.loads(state["result"]["value"]), requests


def test_every_image_loads(page):
    result, state, _ = page
    images = state["images"]
    assert len(images) == len(result.figures) > 0
    broken = [i["src"] for i in images if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert {i["src"] for i in images} == {f"figures/{name}.png" for name in result.figures}


def test_top_table_is_present(page):
    result, state, _ = page
    assert state["topRows"] == len(result.top) == 10
    assert state["title"].startswith("prunetax report")


def test_the_page_makes_no_network_request(page):
    result, _, requests = page
    assert requests, "the browser reported no request at all: is the Network domain working?"
    remote = [u for u in requests if not u.startswith(("file:", "data:"))]
    assert not remote, f"network requests from an offline page: {remote}"
    html = result.index_html.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
