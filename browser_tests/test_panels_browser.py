"""The panels rendered in a real browser: Voila serves a notebook with ConfigPanels, headless Chromium (Debian's
package) driven by Playwright changes a field, and the change reaches the config in the kernel.

    apt-get install chromium && pip install playwright voila && make browser-test
"""
import re, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from playwright.sync_api import sync_playwright, expect

HERE = Path(__file__).parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

def free_port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

@pytest.fixture(scope="module")
def app():
    assert CHROMIUM, "install Debian's chromium package (apt-get install chromium)"
    from jupyter_client.kernelspec import KernelSpecManager
    if "python3" not in KernelSpecManager().find_kernel_specs():    # Voila needs a registered kernel
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", "python3"], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "voila", str(HERE / "panels_app.ipynb"), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(120):
        try: urllib.request.urlopen(url, timeout=1); break
        except Exception: time.sleep(0.5)
    yield url
    proc.terminate(); proc.wait(10)

def field_input(page, name):
    row = page.locator(".widget-hbox", has=page.locator(".widget-label", has_text=re.compile(f"^{name}$"))).first
    return row.locator("input").first

def test_panels_in_a_browser(app):
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app, timeout=120_000)
        expect(page.get_by_text("config: target.rank=4")).to_be_visible(timeout=120_000)
        for tab in ("Job", "Model", "Quantization", "Target", "Save", "Training", "Datasets", "Sample", "Advanced"):
            expect(page.get_by_text(tab, exact=True).first).to_be_visible()
        page.get_by_text("Target", exact=True).first.click()
        box = field_input(page, "rank")
        box.fill("8"); box.press("Enter")
        expect(page.get_by_text("config: target.rank=8")).to_be_visible(timeout=30_000)   # the kernel's config changed
        box.fill("0"); box.press("Enter")
        expect(page.get_by_text(re.compile(r"target\.rank: 0 is below 1"))).to_be_visible(timeout=30_000)
        expect(page.get_by_text(re.compile(r"Tesla T4: ~"))).to_have_count(0)            # no estimate while the config is invalid
        box.fill("16"); box.press("Enter")
        expect(page.get_by_text(re.compile(r"Tesla T4: ~[\d.]+ GiB VRAM"))).to_be_visible(timeout=30_000)
        page.screenshot(path=str(HERE / "panels_screenshot.png"), full_page=True)
        browser.close()
