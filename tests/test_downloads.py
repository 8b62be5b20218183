"""A download that stalls, as Colab users meet it (hf_xet: googlecolab/colabtools issue 6059, huggingface_hub issues 4085 and
4520): a local stand-in Hub on 127.0.0.1 answers the repository's metadata, starts sending the file and stops, without closing
(HF_HUB_DOWNLOAD_TIMEOUT is raised so the plain-HTTP client waits as hf_xet does). The download runs in a process of its own;
the test reads what it prints and interrupts it as ■ does (SIGINT to the main thread).
Bounds: the message within STALL_S (3 s here) + 5 s; the process ends within 5 s of ■."""
import http.server, json, os, signal, subprocess, sys, threading, time
import pytest

REPO, FILE, SIZE, SHA, ETAG = "Org/repo", "split_files/diffusion_models/big.safetensors", 4 << 20, "0" * 40, "a" * 64

class StallingHub(http.server.BaseHTTPRequestHandler):
    "The metadata of one repository and one file, whose body stops half-way; 404 for anything else."
    stop = threading.Event()
    def log_message(self, *a): pass
    def _not_found(self): self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
    def _file_headers(self):
        for k, v in (("X-Repo-Commit", SHA), ("ETag", f'"{ETAG}"'), ("Content-Length", str(SIZE))): self.send_header(k, v)
    def do_HEAD(self):
        if not self.path.startswith(f"/{REPO}/resolve/"): return self._not_found()
        self.send_response(200); self._file_headers(); self.end_headers()
    def do_GET(self):
        if self.path.startswith(f"/api/models/{REPO}"):
            body = json.dumps({"id": REPO, "sha": SHA, "private": False, "siblings": [{"rfilename": FILE, "size": SIZE, "blobId": ETAG}]}).encode()
            self.send_response(200); self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(body))); self.end_headers()
            return self.wfile.write(body)
        if not self.path.startswith(f"/{REPO}/resolve/"): return self._not_found()
        self.send_response(200); self._file_headers(); self.end_headers()
        self.wfile.write(b"\0" * (SIZE // 2)); self.wfile.flush()
        self.stop.wait(120)                                                          # and then nothing

@pytest.fixture
def hub():
    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StallingHub)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{s.server_address[1]}"
    StallingHub.stop.set(); s.shutdown()

CHILD = f"""
import sys, zimage_nb.sources as S
S.STALL_S = 3
try: S.hub_file({REPO!r}, {FILE!r}, cache_dir=sys.argv[1], progress=True)
except KeyboardInterrupt: print("INTERRUPTED", flush=True); sys.exit(130)
"""

def test_a_stalled_download_is_reported_with_the_fix_and_interrupt_ends_it(hub, tmp_path):
    env = dict(os.environ, HF_ENDPOINT=hub, HF_HUB_DOWNLOAD_TIMEOUT="600", HF_HUB_OFFLINE="0", PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "cache")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines, t_start = [], None
    try:
        for line in p.stdout:
            lines.append(line)
            if "4.0 MiB" in line: t_start = time.monotonic()                     # metadata read: the file download starts
            if "has received nothing for 3 s" in line: break
        reported = time.monotonic() - t_start
        assert reported < 3 + 5 and "plain_downloads()" in line and "run the cell again" in line, "".join(lines)
        t0 = time.monotonic(); p.send_signal(signal.SIGINT)
        out = p.communicate(timeout=30)[0]
        assert p.returncode == 130 and "INTERRUPTED" in out and time.monotonic() - t0 < 5, out
    finally:
        if p.poll() is None: p.kill()
    print(f"stall reported {reported:.1f} s after the download started; ■ ended it in {time.monotonic() - t0:.1f} s")

def test_plain_downloads_turns_hf_xet_off_in_this_python(monkeypatch):
    from huggingface_hub import constants
    from huggingface_hub.utils._runtime import is_xet_available
    from zimage_nb.sources import plain_downloads
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False); monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)
    plain_downloads()
    assert constants.HF_HUB_DISABLE_XET and os.environ["HF_HUB_DISABLE_XET"] == "1" and not is_xet_available()
    monkeypatch.delenv("HF_HUB_DISABLE_XET")
