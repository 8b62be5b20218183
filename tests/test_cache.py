"Caches survive a real kill (SIGKILL, no cleanup) and resume without recomputing what was written."
import subprocess, sys, textwrap
from pathlib import Path
import numpy as np
from PIL import Image
from zimage_nb.cache import CacheStore, cache_latents
from zimage_nb.data import prepare_dataset
from zimage_nb.tiny import tiny_pipeline

def dataset(tmp_path):
    src = tmp_path / "imgs"; src.mkdir()
    for i in range(4):
        a = np.full((96, 96, 3), 40 * i, np.uint8); a[10:50, 10:50] = 255 - 40 * i
        Image.fromarray(a).save(src / f"{i}.png")
    return src

def test_caching_killed_with_sigkill_resumes(tmp_path):
    src, store = dataset(tmp_path), tmp_path / "store"
    script = textwrap.dedent(f"""
        import os, signal
        from zimage_nb.cache import CacheStore, cache_latents
        from zimage_nb.data import prepare_dataset
        from zimage_nb.tiny import tiny_pipeline
        class Store(CacheStore):
            n = 0
            def put(self, *a, **k):
                super().put(*a, **k); Store.n += 1
                if Store.n == 3: os.kill(os.getpid(), signal.SIGKILL)
        rep = prepare_dataset({str(src)!r}, {str(tmp_path / 'w')!r}, resolutions=(64, 96))
        cache_latents([rep], tiny_pipeline().vae, Store({str(store)!r}), progress=False)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert r.returncode == -9  # really killed
    assert len(CacheStore(store).entries) == 3
    rep = prepare_dataset(src, tmp_path / "w", resolutions=(64, 96))
    res = cache_latents([rep], tiny_pipeline().vae, CacheStore(store), progress=False)
    assert (res["reused"], res["computed"]) == (3, 5)  # 4 images x 2 sizes
    assert all(CacheStore(store).valid(k) for k in res["index"].values())

def test_damaged_manifest_is_rebuilt_not_trusted(tmp_path):
    src = dataset(tmp_path); rep = prepare_dataset(src, tmp_path / "w", resolutions=(64,))
    vae = tiny_pipeline().vae
    cache_latents([rep], vae, CacheStore(tmp_path / "s"), progress=False)
    (tmp_path / "s" / "manifest.json").write_text("{ not json")
    import pytest
    with pytest.warns(UserWarning, match="damaged"): store = CacheStore(tmp_path / "s")
    res = cache_latents([rep], vae, store, progress=False)
    assert res["computed"] == 4 and all(store.valid(k) for k in res["index"].values())

def test_other_crop_or_model_means_other_entries(tmp_path):
    src = dataset(tmp_path); rep = prepare_dataset(src, tmp_path / "w", resolutions=(64,))
    store = CacheStore(tmp_path / "s")
    a = cache_latents([rep], tiny_pipeline(0).vae, store, progress=False)
    b = cache_latents([rep], tiny_pipeline(1).vae, store, progress=False)
    c = cache_latents([rep], tiny_pipeline(0).vae, store, crop="random", progress=False)
    assert b["computed"] == 4 and c["computed"] == 4 and len(set(a["index"].values()) | set(b["index"].values()) | set(c["index"].values())) == 12
