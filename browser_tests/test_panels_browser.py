"""The panels rendered in a real browser: Voila serves a notebook, headless Chromium (Debian's package) driven by
Playwright clicks and uploads as a user does, and the kernel's side is read from what the page shows.

    apt-get install chromium && pip install playwright voila && make browser-test
"""
import io, re, shutil, socket, subprocess, sys, time, urllib.request, zipfile
from pathlib import Path
import pytest
from playwright.sync_api import sync_playwright, expect

HERE = Path(__file__).parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

def free_port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def serve(notebook:Path):
    "Voila serving `notebook` on a free local port: yields its address."
    assert CHROMIUM, "install Debian's chromium package (apt-get install chromium)"
    from jupyter_client.kernelspec import KernelSpecManager
    if "python3" not in KernelSpecManager().find_kernel_specs():    # Voila needs a registered kernel
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", "python3"], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(120):
        try: urllib.request.urlopen(url, timeout=1); break
        except Exception: time.sleep(0.5)
    yield url
    proc.terminate(); proc.wait(10)

@pytest.fixture(scope="module")
def app(): yield from serve(HERE / "panels_app.ipynb")

@pytest.fixture(scope="module")
def upload_app(): yield from serve(HERE / "upload_app.ipynb")

@pytest.fixture(scope="module")
def page():
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser.new_page(viewport={"width": 1400, "height": 1000})
        browser.close()

def field_input(page, name):
    row = page.locator(".widget-hbox", has=page.locator(".widget-label", has_text=re.compile(f"^{name}$"))).first
    return row.locator("input").first

def test_panels_in_a_browser(app, page):
    if True:
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

def zip_of_images(mb:float)->bytes:
    "A zip of captioned 512² noise PNGs (incompressible) of at least `mb` MiB."
    import numpy as np
    from PIL import Image
    buf, rng, i = io.BytesIO(), np.random.default_rng(0), 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        while buf.tell() < mb * 2**20:
            png = io.BytesIO(); Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(png, "PNG")
            z.writestr(f"img{i}.png", png.getvalue()); z.writestr(f"img{i}.txt", "a photo of [trigger]"); i += 1
    return buf.getvalue()

def pick_files(page, data:bytes):
    with page.expect_file_chooser() as chooser: page.get_by_role("button", name="upload").first.click()
    chooser.value.set_files(files=[{"name": "photos.zip", "mimeType": "application/zip", "buffer": data}])

def test_the_upload_button_delivers_under_the_message_limit_and_says_what_to_do_above_it(upload_app, page):
    """The dataset panel's upload button as Kaggle users press it. 2 MiB arrives and is unpacked and checked. 12 MiB
    never reaches the kernel: the whole pick travels in one widget message, and Jupyter's server (tornado's
    websocket_max_message_size, 10 MiB by default: tornado/websocket.py) closes the connection instead (the browser
    reconnects; jupyter-widgets/ipywidgets issue 2522, jupyter/notebook issue 3468). After that the button sends
    nothing more until the page is reloaded (measured: Voila 0.5, ipywidgets 8.1.9, Chromium), while other widgets
    still work. Nothing arrives for the kernel to report, so the note beside the button says all this before the pick."""
    closed = []
    page.on("websocket", lambda ws: ws.on("close", lambda *_: closed.append(ws.url)))
    page.goto(upload_app, timeout=120_000)
    expect(page.get_by_text("kernel received: nothing")).to_be_visible(timeout=120_000)
    expect(page.get_by_text(re.compile(r"At most 10 MB in all through this button: a larger pick never arrives .* stays dead until the page is reloaded\. "
                                       r"More: add the images as a dataset \(Kaggle: \+ Add Input\) or a folder, and set path to it"))).to_be_visible()
    pick_files(page, zip_of_images(2))
    expect(page.get_by_text("kernel received: 1 upload(s), the last of 1 file(s)")).to_be_visible(timeout=60_000)
    expect(page.get_by_text(re.compile(r"upload-[0-9a-f]{8}: \d+ files -> "))).to_be_visible(timeout=60_000)   # unpacked and checked
    assert not closed
    pick_files(page, zip_of_images(12))
    for _ in range(120):
        if closed: break
        page.wait_for_timeout(500)
    assert closed, "the 12 MiB upload did not close the kernel connection"
    page.wait_for_timeout(5000)                                                     # the reconnected page, a while later
    expect(page.get_by_text("kernel received: 1 upload(s), the last of 1 file(s)")).to_be_visible()           # still the first upload
    pick_files(page, zip_of_images(2))
    page.wait_for_timeout(10_000)
    expect(page.get_by_text("kernel received: 1 upload(s), the last of 1 file(s)")).to_be_visible()           # the button is dead: what the note says

def test_docs_site_pages_render(page, tmp_path):
    "The docs site (tools/make_docs.py) opened as a reader opens it: the front page's tables, a stage's pictures and its sidebar."
    subprocess.run([sys.executable, str(HERE.parent / "tools" / "make_docs.py"), "--out", str(tmp_path)], check=True, capture_output=True)
    loaded = lambda: page.evaluate("[...document.images].filter(i => !/^https?:/.test(i.getAttribute('src'))).map(i => i.complete && i.naturalWidth > 0)")   # the badges are remote
    page.goto((tmp_path / "index.html").as_uri())
    expect(page.locator("h1").first).to_contain_text("zimage-nb")
    assert page.locator("table").count() >= 2 and page.get_by_role("cell", name="`09b_report`").count() + page.locator("td code", has_text="09b_report").count() >= 1
    assert loaded() and all(loaded()), "a picture of the front page did not load"
    assert page.locator("a[href*='colab.research.google.com']").count() >= 1
    page.locator(".zimage-nav a", has_text="09_sample").click()
    expect(page).to_have_url(re.compile(r"09_sample\.html$"))
    images = loaded()
    assert len(images) >= 4 and all(images), images                                 # the comparison grids saved in the notebook
    assert page.locator(".jp-CodeCell").count() > 5 and page.get_by_text("#| export").count() == 0
