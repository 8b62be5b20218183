"Caches survive a real kill (SIGKILL, no cleanup) and resume without recomputing what was recorded; the manifest is not rewritten per entry."
import subprocess, sys, textwrap
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

def killed_after_three(tmp_path, every):
    "Cache 8 latents in a process that SIGKILLs itself (no cleanup, no finally) after the third entry."
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
        cache_latents([rep], tiny_pipeline().vae, Store({str(store)!r}, every={every}), progress=False)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert r.returncode == -9  # really killed
    return src, store

def test_caching_killed_with_sigkill_resumes(tmp_path):
    src, store = killed_after_three(tmp_path, every=0)   # the manifest saved after every entry
    assert len(CacheStore(store).entries) == 3
    rep = prepare_dataset(src, tmp_path / "w", resolutions=(64, 96))
    res = cache_latents([rep], tiny_pipeline().vae, CacheStore(store), progress=False)
    assert (res["reused"], res["computed"]) == (3, 5)  # 4 images x 2 sizes
    assert all(CacheStore(store).valid(k) for k in res["index"].values())

def test_unsaved_records_are_encoded_again_not_trusted(tmp_path):
    "With the default (the manifest saved every 30 s), a kill within the first 30 s leaves three entry files but no records."
    src, store = killed_after_three(tmp_path, every=30)
    assert CacheStore(store).entries == {} and len(list(store.glob("*.safetensors"))) == 3
    rep = prepare_dataset(src, tmp_path / "w", resolutions=(64, 96))
    res = cache_latents([rep], tiny_pipeline().vae, CacheStore(store), progress=False)
    assert (res["reused"], res["computed"]) == (0, 8) and len(list(store.glob("*.safetensors"))) == 8   # the same keys, rewritten
    assert all(CacheStore(store).valid(k) for k in res["index"].values())

def test_manifest_rewritten_once_per_caching_run(tmp_path, monkeypatch):
    """A mounted Google Drive uploads every rewrite of a file and keeps the old copy in the Trash (minimaxir/gpt-2-simple
    issue 155: overwrites on a mounted Drive filled the Trash); bursts of small writes hit Drive's rate limit
    (googlecolab/colabtools issue 6051). Eight entries in under 30 s: one manifest write, at the end."""
    import zimage_nb.cache as cache
    writes = []
    real = cache.atomic_write_text
    monkeypatch.setattr(cache, "atomic_write_text", lambda p, t: writes.append(p) or real(p, t))
    rep = prepare_dataset(dataset(tmp_path), tmp_path / "w", resolutions=(64, 96))
    res = cache_latents([rep], tiny_pipeline().vae, CacheStore(tmp_path / "s"), progress=False)
    assert res["computed"] == 8 and writes == [tmp_path / "s" / "manifest.json"]
    assert len(CacheStore(tmp_path / "s").entries) == 8
    writes.clear(); cache_latents([rep], tiny_pipeline().vae, CacheStore(tmp_path / "s"), progress=False)
    assert writes == []   # nothing new: not rewritten

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
    import torch
    other = tiny_pipeline(0).vae                      # the VAE with other weights (e.g. a fine-tuned one)
    with torch.no_grad(): next(other.parameters()).add_(0.01)
    b = cache_latents([rep], other, store, progress=False)
    c = cache_latents([rep], tiny_pipeline(0).vae, store, crop="random", progress=False)
    assert b["computed"] == 4 and c["computed"] == 4 and len(set(a["index"].values()) | set(b["index"].values()) | set(c["index"].values())) == 12

def test_cached_latents_decode_back_to_the_image(tmp_path):
    "The tiny VAE is trained (zimage_nb/assets): a cached latent decodes to its image within a stated tolerance."
    import torch
    from zimage_nb.cache import decode_latents, image_tensor
    from zimage_nb.tiny import write_demo_dataset
    src = write_demo_dataset(tmp_path / "photos", n=4)
    rep = prepare_dataset(src, tmp_path / "w", resolutions=(64,))
    store, vae = CacheStore(tmp_path / "store"), tiny_pipeline().vae
    res = cache_latents([rep], vae, store, progress=False)
    errs = []
    for r in rep.usable:
        x = image_tensor(r.prepared, r.buckets[64])                      # [-1, 1], what was encoded
        y = decode_latents(vae, store.get(res["index"][(r.prepared, 64)])["latent"][None])[0].clamp(-1, 1)
        assert y.shape == x.shape
        errs.append(float((y - x).abs().mean()) * 127.5)               # mean absolute error in 0-255 units
        # the content: the red disc is where it was (centre of "redness" within 3 pixels)
        def centre(t):
            m = (t[0] - t[1:].max(0).values).clamp(min=0.5) - 0.5
            ys, xs = torch.meshgrid(torch.arange(t.shape[1]), torch.arange(t.shape[2]), indexing="ij")
            return torch.stack([(m * ys).sum(), (m * xs).sum()]) / m.sum()
        assert float((centre(y) - centre(x)).norm()) < 3, (centre(y), centre(x))
    print("MAE per image (0-255):", [round(e, 1) for e in errs])
    assert max(errs) < 25, errs     # measured 9.6-21.7 on the demo pictures of 2026-11-29 (a random VAE: > 40); see bench/RESULTS.md (tiny VAE)
    # a random VAE of the same shape does not reconstruct: the tolerance means something
    from diffusers import AutoencoderKL
    from zimage_nb.tiny import TINY_VAE
    rnd = AutoencoderKL(**TINY_VAE).eval()
    r0 = rep.usable[0]; x = image_tensor(r0.prepared, r0.buckets[64])
    from zimage_nb.cache import encode_latents
    with torch.no_grad(): y = decode_latents(rnd, encode_latents(rnd, x[None]))[0].clamp(-1, 1)
    assert float((y - x).abs().mean()) * 127.5 > 40
