"""One real browser: Debian's Chromium driven by Playwright signs in to the running dashboard
(`streamlit run`), opens the overview and a flow's graph, and saves screenshots for the README."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
# The README's screenshots are refreshed only on request (IVR_UPDATE_SCREENSHOTS=1), so a test
# run never leaves tracked files changed; otherwise they go to a scratch folder.
DOCS_SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no `chromium` on PATH (Debian: apt-get install chromium; .ci/run does this)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def dashboard_url(backend) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "IVR_API_URL": backend.url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
         "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "exited")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_sign_in_overview_and_flow_graph_in_chromium(backend, dashboard_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = DOCS_SHOTS if os.environ.get("IVR_UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(dashboard_url, wait_until="networkidle")
            page.get_by_role("textbox", name="Username").fill("admin")
            page.get_by_role("textbox", name="Password").fill("admin123")
            page.get_by_role("button", name="Sign in").click()

            expect(page.get_by_role("heading", name="Overview")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Calls today")).to_be_visible(timeout=30_000)
            expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
            page.wait_for_timeout(1500)  # let the charts finish drawing
            page.screenshot(path=str(shots / "overview.png"), full_page=True)

            page.get_by_text("Wallboard mode").click()
            expect(page.locator(".wb-tile").first).to_be_visible(timeout=30_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "wallboard.png"))
            page.get_by_text("Wallboard mode").click()

            page.get_by_role("link", name="Flows").click()
            expect(page.get_by_role("heading", name="Flows")).to_be_visible(timeout=30_000)
            graph = page.locator("[data-testid='stGraphVizChart'] svg").first
            expect(graph).to_be_visible(timeout=30_000)
            assert graph.locator("g.node").count() >= 17  # the seeded flow's nodes, drawn
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "flow-graph.png"), full_page=True)

            page.get_by_role("link", name="Flow editor").click()
            expect(page.get_by_role("heading", name="Flow editor")).to_be_visible(
                timeout=30_000)
            canvas = page.frame_locator("iframe").first.locator(".react-flow__node").first
            expect(canvas).to_be_visible(timeout=30_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(shots / "flow-editor.png"), full_page=True)
            # Dragging a node on the canvas comes back to Python as an edited draft.
            expect(page.get_by_text("Draft revision 1 · saved")).to_be_visible()
            node = page.frame_locator("iframe").first.locator(
                ".react-flow__node", has_text="Main Menu")
            box = node.bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] / 2 + 120, box["y"] + 60, steps=12)
            page.mouse.up()
            expect(page.get_by_text("Draft revision 1 · unsaved changes")).to_be_visible(
                timeout=30_000)
            page.get_by_role("button", name="Discard changes").click()
            expect(page.get_by_text("Draft revision 1 · saved")).to_be_visible(timeout=30_000)

            # The other pages, for the README and for a person to look over; a caller holds in
            # the tech queue so Live calls has something to show.
            page.set_viewport_size({"width": 1440, "height": 2000})
            held = backend.run(backend.hold_in_tech_queue())
            for link, heading, name in (
                ("Live calls", "Live calls", "live-calls.png"),
                ("Call history", "Call history", "call-history.png"),
                ("Agents", "Agents", "agents.png"),
                ("Queues", "Queues", "queues.png"),
                ("Business hours", "Business hours", "business-hours.png"),
            ):
                page.get_by_role("link", name=link).click()
                expect(page.get_by_role("heading", name=heading)).to_be_visible(timeout=30_000)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(shots / name), full_page=True)
            backend.run(backend.hang_up(held))
        finally:
            browser.close()
    for name in ("overview.png", "wallboard.png", "flow-graph.png", "flow-editor.png",
                 "live-calls.png"):
        assert (shots / name).stat().st_size > 10_000, name
