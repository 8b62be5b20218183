"Dataset preparation: sources, buckets, crops, report; generated images only."
import hashlib, math, zipfile
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from zimage_nb.core import ZImageError
from zimage_nb.data import bucket_sizes, crop_to_bucket, pick_bucket, prepare_dataset, source_folder

def img(path, size=(640, 480), color=(200, 30, 30)):
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path); return path

def tree_hash(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).rglob("*")) if p.is_file()}

@pytest.mark.parametrize("res", [512, 768, 1024])
def test_buckets_are_multiples_of_32_with_area_close_to_res_squared(res):
    bs = bucket_sizes(res)
    assert (res, res) in bs and all(w % 32 == 0 and h % 32 == 0 and 0.9 <= w * h / res**2 <= 1.05 for w, h in bs)
    assert all((h, w) in bs for w, h in bs)

@pytest.mark.parametrize("res", [512, 768, 1024])
@pytest.mark.parametrize("ar", [1 / 4, 1 / 3, 9 / 16, 2 / 3, 3 / 4, 1, 4 / 3, 3 / 2, 16 / 9, 3, 4])
def test_bucket_keeps_the_aspect_ratio_within_8_percent(res, ar):
    w, h = round(2000 * math.sqrt(ar)), round(2000 / math.sqrt(ar))
    bw, bh = pick_bucket(w, h, res)
    assert abs(math.log((bw / bh) / ar)) < 0.08

def test_no_upscaling_by_default():
    assert pick_bucket(500, 500, 512) is None and pick_bucket(500, 500, 512, allow_upscale=True) == (512, 512)

def test_center_crop_keeps_the_middle():
    a = np.zeros((500, 1000, 3), np.uint8); a[:, :500] = (255, 0, 0); a[:, 500:] = (0, 0, 255)
    c = np.asarray(crop_to_bucket(Image.fromarray(a), (512, 512)))
    assert c.shape == (512, 512, 3) and (c[:, :200] == (255, 0, 0)).all() and (c[:, -200:] == (0, 0, 255)).all()

def test_parquet_dataset_through_hf_prefix(tmp_path):
    from datasets import Dataset, Features, Image as HFImage, Value
    ims = [Image.new("RGB", (600, 600), (40 * i, 0, 0)) for i in range(3)]
    ds = Dataset.from_dict({"image": ims, "caption": ["one [trigger]", "two", ""]}, features=Features({"image": HFImage(), "caption": Value("string")}))
    (tmp_path / "pq").mkdir(); ds.to_parquet(str(tmp_path / "pq" / "train.parquet"))
    rep = prepare_dataset(f"hf:{tmp_path / 'pq'}", tmp_path / "work", resolutions=(512,), trigger="zxq", default_caption="a photo")
    assert sorted(r.caption for r in rep.usable) == ["a photo", "one zxq", "two"]

def test_zip_path_source_and_originals_untouched(tmp_path):
    src = tmp_path / "src"; img(src / "a.png"); img(src / "b.png", color=(0, 200, 0)); (src / "a.txt").write_text("cap a")
    before = tree_hash(src)
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as z:
        for p in src.iterdir(): z.write(p, p.name)
    rep = prepare_dataset(tmp_path / "set.zip", tmp_path / "work", resolutions=(512,))
    assert {r.file: r.caption for r in rep.usable} == {"a.png": "cap a", "b.png": ""}
    rep2 = prepare_dataset(src, tmp_path / "work", resolutions=(512,), name="direct")
    assert tree_hash(src) == before and len(rep2.usable) == 2
    assert all(Path(r.prepared).is_relative_to(tmp_path / "work") for r in rep.usable + rep2.usable)

def test_all_skipped_names_the_reasons(tmp_path):
    img(tmp_path / "d" / "small.png", (64, 64)); (tmp_path / "d" / "x.doc").write_bytes(b"x")
    with pytest.raises(ZImageError, match=r"(?s)has no usable image.*too small.*not an image"):
        prepare_dataset(tmp_path / "d", tmp_path / "w", resolutions=(512,))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZImageError, match="has no usable image"): prepare_dataset(tmp_path / "empty", tmp_path / "w")

def test_bad_paths_say_what_to_do(tmp_path):
    with pytest.raises(ZImageError, match="mount Drive"): source_folder(tmp_path / "nope", tmp_path)
    with pytest.raises(ZImageError, match="is empty"): source_folder("", tmp_path)

def test_report_table_has_one_row_per_file(tmp_path):
    img(tmp_path / "d" / "a.png"); (tmp_path / "d" / "n.pdf").write_bytes(b"%PDF")
    t = prepare_dataset(tmp_path / "d", tmp_path / "w", resolutions=(512,)).table()
    assert list(t["file"]) == ["a.png", "n.pdf"] and list(t["status"]) == ["kept", "skipped"]

@pytest.mark.parametrize("mode", ["LA", "PA_like_P_with_transparency"])
def test_other_transparency_modes_are_flattened_on_white(tmp_path, mode):
    from zimage_nb.data import clean_image
    import io
    im = Image.new("RGBA", (64, 64), (255, 0, 0, 0))  # fully transparent red
    im = im.convert("LA") if mode == "LA" else im.convert("P")
    if mode != "LA": im.info["transparency"] = im.getpixel((0, 0))
    buf = io.BytesIO(); im.save(buf, "PNG")
    out, fixes = clean_image(buf.getvalue())
    assert fixes and "transparency flattened on white" in fixes[0] and out.getpixel((5, 5)) == (255, 255, 255)

def test_long_captions_are_reported_when_caching(tmp_path):
    from zimage_nb.cache import build_caches
    from zimage_nb.models import tiny_model_folder
    img(tmp_path / "d" / "a.png", (96, 96)); (tmp_path / "d" / "a.txt").write_text("long " * 40)
    rep = prepare_dataset(tmp_path / "d", tmp_path / "w", resolutions=(64,))
    with pytest.warns(UserWarning, match="a.png has .* tokens; the text encoder keeps 64"):
        res = build_caches([rep], tiny_model_folder(tmp_path / "m"), tmp_path / "w", max_sequence_length=64, progress=False)
    assert [f for f, _ in res["long_captions"]] == ["a.png"]

# ---- classes of messy input: names that collide, captions from any editor, archives, huge and phone images

CAPTION_BYTES = {                                     # how editors save "[trigger] at the café – dusk"
    "utf-8": lambda t: t.encode("utf-8"), "utf-8 BOM": lambda t: t.encode("utf-8-sig"),
    "utf-16 (Notepad Unicode)": lambda t: t.encode("utf-16"), "utf-16-be BOM": lambda t: b"\xfe\xff" + t.encode("utf-16-be"),
    "utf-16-le no BOM": lambda t: t.encode("utf-16-le"), "cp1252": lambda t: t.encode("cp1252"),
    "CRLF + NUL + ESC": lambda t: t.replace(" at", "\x00 at\x1b").encode() + b"\r\n\r\n", "utf-32": lambda t: t.encode("utf-32"),
}

@pytest.mark.parametrize("kind", list(CAPTION_BYTES))
def test_caption_files_from_any_editor(tmp_path, kind):
    d = tmp_path / "d"; img(d / "p.png"); (d / "p.txt").write_bytes(CAPTION_BYTES[kind]("[trigger] at the café – dusk"))
    r = prepare_dataset(d, tmp_path / "w", resolutions=(512,), trigger="zxq").usable[0]
    assert r.caption == "zxq at the café – dusk"
    assert not any(ord(c) < 32 or c in "\ufeff\ufffd" for c in r.caption)
    assert (kind == "utf-8") == (r.status == "kept")   # anything but plain UTF-8 is said in the report line

def test_no_two_images_share_a_prepared_file(tmp_path):
    "Names that flatten or differ only by extension, case, nesting or odd characters."
    d, names = tmp_path / "d", ["same.jpg", "same.png", "a/b.png", "a__b.png", "A/b.png", "x y.png", "x_y.png", "é.png", "e.png",
                                "deep/a/b/c.png", "deep__a__b__c.png", "dots.v1.png", "dots.v1.jpg", "-.png", "_.png"]
    for i, n in enumerate(names): img(d / n, color=(10 * i, 255 - 10 * i, 7 * i))
    rep = prepare_dataset(d, tmp_path / "w", resolutions=(512,))
    assert len(rep.usable) == len(names) and len({r.prepared for r in rep.usable}) == len(names)
    for r in rep.usable:                              # and each prepared file holds its own source's pixels
        assert np.abs(np.asarray(Image.open(r.prepared), float).mean((0, 1)) - np.asarray(Image.open(d / r.file).convert("RGB"), float).mean((0, 1))).max() < 8
    again = prepare_dataset(d, tmp_path / "w", resolutions=(512,))   # same names next time, nothing stale left
    assert [r.prepared for r in again.usable] == [r.prepared for r in rep.usable]
    (d / "same.png").unlink()
    third = prepare_dataset(d, tmp_path / "w", resolutions=(512,))
    assert sorted(p.name for p in (tmp_path / "w" / "images" / "dataset").iterdir()) == sorted(Path(r.prepared).name for r in third.usable)

def test_archives_report_what_they_did_not_unpack(tmp_path):
    from zimage_nb.core import peak_rss
    buf = tmp_path / "set.zip"
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(img(tmp_path / "a.png"), "set/a.png"); z.writestr("set/a.txt", "[trigger] " + "word " * 20_000_000)   # 100 MB caption
        z.writestr("../up.png", b"x"); z.writestr("/abs/path.png", b"x"); z.writestr("__MACOSX/set/._a.png", b"x")
        z.write(img(tmp_path / "b.png", color=(0, 0, 200)), "set/b.png")
    with peak_rss() as m: rep = prepare_dataset(buf, tmp_path / "w", resolutions=(512,), trigger="zxq")
    rows = {r.file: r for r in rep.rows}
    assert rows["../up.png"].detail.startswith("unsafe path") and rows["/abs/path.png"].detail.startswith("unsafe path")
    assert rows["__MACOSX/set/._a.png"].detail.startswith("OS clutter")
    a = rows["set/a.png"]
    assert a.caption.startswith("zxq word") and len(a.caption) <= 16 * 1024
    assert "only the first 16.0 KiB of a 95.4 MiB archive entry unpacked" in a.detail
    assert m.extra < 60 * 2**20, m.extra                       # the 100 MB entry never sat in memory
    assert rows["set/b.png"].status == "kept"

def test_a_zip_bomb_entry_is_skipped_and_the_rest_used(tmp_path, monkeypatch):
    import zimage_nb.data as D
    monkeypatch.setattr(D, "ENTRY_LIMIT", 1 << 20)             # 1 MiB stands in for the 1 GiB limit
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.png", b"\0" * (5 << 20)); z.write(img(tmp_path / "ok.png"), "ok.png")
    rows = {r.file: r for r in prepare_dataset(tmp_path / "bomb.zip", tmp_path / "w", resolutions=(512,)).rows}
    assert rows["big.png"].detail.startswith("inflates to over 1.0 MiB: not unpacked") and rows["ok.png"].status == "kept"

def test_one_huge_or_broken_file_never_stops_the_others(tmp_path):
    d = tmp_path / "d"; img(d / "good.png")
    Image.new("RGB", (14000, 14000), (1, 2, 3)).save(d / "scan.jpg", quality=30)
    (d / "half.png").write_bytes((d / "good.png").read_bytes()[:150])
    rows = {r.file: r for r in prepare_dataset(d, tmp_path / "w", resolutions=(512,)).rows}
    assert rows["good.png"].status == "kept" and rows["half.png"].status == "skipped"
    assert rows["scan.jpg"].status == "fixed" and rows["scan.jpg"].detail.startswith("decoded at 1/2 size: 14000x14000")
    skip = {r.file: r for r in prepare_dataset(d, tmp_path / "w", resolutions=(512,), large_images="skip", name="s").rows}
    assert skip["scan.jpg"].status == "skipped" and "large_images to 'reduce'" in skip["scan.jpg"].detail and skip["good.png"].status == "kept"

@pytest.mark.parametrize("ext,fmt", [(".heic", "HEIF"), (".HEIF", "HEIF"), (".avif", "AVIF")])
def test_phone_and_browser_formats(tmp_path, ext, fmt):
    d = tmp_path / "d"; d.mkdir()
    Image.new("RGB", (640, 480), (30, 160, 60)).save(d / f"IMG_0001{ext}", fmt); (d / "IMG_0001.txt").write_text("[trigger]")
    r = prepare_dataset(d, tmp_path / "w", resolutions=(512,), trigger="zxq").usable[0]
    assert r.caption == "zxq" and r.size == (640, 480)
    assert np.abs(np.asarray(Image.open(r.prepared), float).mean((0, 1)) - (30, 160, 60)).max() < 6

def test_an_unreadable_mask_stops_nothing(tmp_path):
    from PIL import Image
    from zimage_nb.data import prepare_dataset
    src = tmp_path / "src"; src.mkdir()
    for n, c in (("a", (200, 30, 30)), ("b", (30, 30, 200))): Image.new("RGB", (64, 64), c).save(src / f"{n}.png")
    (src / "a.mask.png").write_bytes(b"not a png")
    Image.new("L", (64, 64), 255).save(src / "b.mask.png")
    rows = {r.file: r for r in prepare_dataset(src, tmp_path / "work", resolutions=(64,), masks=True, progress=False).rows}
    assert (rows["a.png"].mask_from, rows["a.png"].mask, rows["b.png"].mask_from) == ("ignored", "", "sidecar")
    assert "mask a.mask.png unreadable" in rows["a.png"].detail and rows["a.png"].status == "fixed"
