"Automatic captions with the tiny offline Qwen3-VL captioner: batching, sidecars, keep / overwrite, resume after SIGKILL, memory release, trigger, token limit, offline errors."
import signal, subprocess, sys
import pytest, torch
from PIL import Image
from zimage_nb.caption import (caption_images, describe, finish_caption, load_captioner, captioner_folder, tiny_captioner_folder, _fit_tokens,
                               PROGRESS_FILE, STYLES)
from zimage_nb.core import ZImageError

KW = dict(model="tiny", device="cpu", dtype=torch.float32, progress=False)

def photos(folder, n=6):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n): Image.new("RGB", (96 + 8 * i, 64), (40 * i, 200 - 30 * i, 90)).save(folder / f"p{i}.png")
    return folder

@pytest.fixture(scope="module")
def cap(): return load_captioner("tiny", device="cpu", dtype=torch.float32)

def test_a_batch_gives_each_image_its_own_caption(cap):
    ims = [Image.new("RGB", (80 + 16 * i, 64), (60 * i, 20, 200 - 50 * i)) for i in range(4)]
    batch = describe(cap, ims, STYLES["short"][0], 10)
    alone = [describe(cap, [im], STYLES["short"][0], 10)[0] for im in ims]
    assert batch == alone and len(set(batch)) > 1                 # left padding and order kept; different images, different text

def test_sidecars_keep_existing_and_overwrite_only_when_asked(tmp_path):
    d = photos(tmp_path / "d")
    (d / "p0.txt").write_text("my own caption"); (d / "p1.txt").write_text("   \n")     # an empty one counts as missing
    rep = caption_images(d, batch_size=4, **KW)
    st = {r.file: r.status for r in rep.rows}
    assert st == {"p0.png": "kept", **{f"p{i}.png": "captioned" for i in range(1, 6)}}
    assert (d / "p0.txt").read_text() == "my own caption"
    assert all((d / f"p{i}.txt").read_text().startswith("[trigger]") for i in range(1, 6))
    again = caption_images(d, **KW)
    assert {r.status for r in again.rows} == {"kept"} and again.seconds_per_image == 0.0      # nothing to do: no model loaded
    over = caption_images(d, overwrite=True, style="short", **KW)
    assert {r.status for r in over.rows} == {"captioned"} and (d / "p0.txt").read_text() != "my own caption"
    assert not (d / PROGRESS_FILE).exists() and not [p for p in d.iterdir() if p.name.startswith(".p") and p.suffix == ".tmp"]

def test_no_trigger_and_styles(tmp_path):
    d = photos(tmp_path / "d", 2)
    for style in STYLES:
        rep = caption_images(d, style=style, trigger=False, overwrite=True, **KW)
        assert all("[trigger]" not in r.caption for r in rep.rows)
    assert finish_caption("The subject, seen from behind, walks away.", "not-subject") == "[trigger], seen from behind, walks away."

KILL = """
import os, signal, sys, torch
import zimage_nb.caption as C
real, calls = C.describe, []
def dying(*a, **k):
    calls.append(1)
    if len(calls) == 3: os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
C.describe = dying
C.caption_images(sys.argv[1], batch_size=2, overwrite=sys.argv[2] == "1", model="tiny", device="cpu", dtype=torch.float32, progress=False)
"""

@pytest.mark.parametrize("overwrite", [False, True])
def test_resumes_after_sigkill_without_redoing_images(tmp_path, overwrite):
    d = photos(tmp_path / "d", 6)
    if overwrite:
        for i in range(6): (d / f"p{i}.txt").write_text("old")
    tiny_captioner_folder()                                    # built before the child needs it
    p = subprocess.run([sys.executable, "-c", KILL, str(d), "1" if overwrite else "0"], capture_output=True, text=True)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    first = {f.name: f.read_text() for f in d.glob("*.txt")}
    new = [n for n, t in first.items() if t != "old"]
    assert len(new) == 4                                       # two batches of 2 written before the kill
    rep = caption_images(d, batch_size=2, overwrite=overwrite, **KW)
    st = {r.file: r.status for r in rep.rows}
    assert sorted(f for f, s in st.items() if s == "captioned") == sorted(f"p{i}.png" for i in range(6) if f"p{i}.txt" not in new)
    assert all((d / n).read_text() == first[n] for n in new)    # what the killed run wrote is kept, not redone

def test_captioner_memory_is_released(tmp_path):
    d = photos(tmp_path / "d", 2)
    assert caption_images(d, **KW).released

def test_long_captions_are_cut_to_the_token_limit(cap):
    text = "One short sentence here. " * 40
    cut, was = _fit_tokens(text, cap.processor.tokenizer, 100)
    assert was and len(cap.processor.tokenizer(cut).input_ids) <= 100 and cut.endswith(".")
    assert _fit_tokens("Short.", cap.processor.tokenizer, 100) == ("Short.", False)

def test_unreadable_images_are_skipped_and_the_rest_captioned(tmp_path):
    d = photos(tmp_path / "d", 2); (d / "bad.jpg").write_bytes(b"not a jpeg")
    rep = caption_images(d, **KW)
    assert {r.file: r.status for r in rep.rows} == {"bad.jpg": "skipped", "p0.png": "captioned", "p1.png": "captioned"}

def test_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ZImageError, match="cannot be reached to fetch the captioner Qwen/Qwen3-VL-2B-Instruct"):
        captioner_folder("qwen3-vl-2b")
    with pytest.raises(ZImageError, match="is not a folder, a Hub id"): captioner_folder("no such thing")
    with pytest.raises(ZImageError, match="is not a folder"): caption_images(tmp_path / "missing", **KW)
    with pytest.raises(ZImageError, match="use one of short, detailed, not-subject"): caption_images(photos(tmp_path / "d", 1), style="tags", **KW)

def test_training_captions_images_first_when_asked(tmp_path, monkeypatch):
    import zimage_nb.train as T, zimage_nb.caption as C
    from zimage_nb.tiny import write_demo_dataset
    monkeypatch.setattr(C, "degenerate", lambda text: "")     # the tiny random-weight captioner's output can be degenerate ('+6222...'), depending on versions: tested above
    from zimage_nb.config import preset
    photos = write_demo_dataset(tmp_path / "photos", n=3)
    for f in photos.glob("*.txt"): f.unlink()
    cfg = preset("tiny", job__output_dir=str(tmp_path / "runs"), job__trigger_word="zxq", datasets__0__path=str(photos),
                 datasets__0__auto_caption="not-subject", advanced__caption_model="tiny", training__steps=2, sample__every=0, save__every=10)
    res = T.train(cfg, progress=False)
    assert res["steps"] == 2 and len(list(photos.glob("*.txt"))) == 3
    assert all(it.file for it in res["run"].items) and {t for t in res["run"].text_index if t.startswith("zxq")}   # the new captions, trigger filled in

def test_degenerate_output_is_not_written(tmp_path, cap, monkeypatch):
    "What a Qwen captioner writes when fp16 overflows (transformers PR 33312: only '!') never becomes a caption; the other images are captioned."
    import zimage_nb.caption as C
    photos(tmp_path, n=3)
    real = C.describe
    monkeypatch.setattr(C, "describe", lambda c, images, *a: ["!!!!!!!!!!!!!!!!"] + real(c, images, *a)[1:])
    rep = caption_images(tmp_path, model=cap, batch_size=3, progress=False)
    bad = [r for r in rep.rows if r.status == "skipped"]
    assert len(bad) == 1 and "one repeated character" in bad[0].detail and not (tmp_path / bad[0].file).with_suffix(".txt").exists()
    assert sum(r.status == "captioned" for r in rep.rows) == 2
