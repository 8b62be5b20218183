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
    import torch, warnings
    from zimage_nb.cache import build_caches
    from zimage_nb.models import tiny_model_folder
    img(tmp_path / "d" / "a.png", (96, 96)); (tmp_path / "d" / "a.txt").write_text("long " * 40)
    rep = prepare_dataset(tmp_path / "d", tmp_path / "w", resolutions=(64,))
    with pytest.warns(UserWarning, match="a.png has .* tokens; the text encoder keeps 64"):
        res = build_caches([rep], tiny_model_folder(tmp_path / "m"), tmp_path / "w", max_sequence_length=64, progress=False)
    assert [f for f, _ in res["long_captions"]] == ["a.png"]
