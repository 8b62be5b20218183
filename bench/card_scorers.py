"""The report card's scorers at real size on the CPU: DINOv2-small and CLIP ViT-B/32 built from their published configs
with random weights (what `sources.REPOS` downloads has these shapes), their real processors, and `report.embed_images`
/ `embed_texts` on pictures at the card's size. Measures their weights, the process's peak memory while embedding,
and the seconds a picture; the card's other cost, sampling, is the planner's (`planner.card_cost`).

    python bench/card_scorers.py --size 768 --n 8          # about a minute on 2 CPU cores
prints one JSON line.
"""
import argparse, json, platform, resource, time
import numpy as np, torch

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--size", type=int, default=768); ap.add_argument("--n", type=int, default=8)
    a = ap.parse_args()
    from PIL import Image
    from transformers import BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, Dinov2Config, Dinov2Model
    from zimage_nb.planner import SCORER_PARAMS
    from zimage_nb.report import Scorers, embed_images, embed_texts, tiny_scorer_folders
    from transformers import AutoTokenizer
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    before = rss()
    torch.manual_seed(0)
    dino = Dinov2Model(Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14, image_size=518)).eval()   # facebook/dinov2-small's config.json
    clip = CLIPModel(CLIPConfig()).eval()                                                                                                 # openai/clip-vit-base-patch32's (the defaults)
    params = {"dino": sum(p.numel() for p in dino.parameters()), "clip": sum(p.numel() for p in clip.parameters())}
    assert params == SCORER_PARAMS, params
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    sc = Scorers(dino, BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, resample=3, image_mean=mean, image_std=std),
                 clip, CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}, resample=3),
                 AutoTokenizer.from_pretrained(tiny_scorer_folders()["clip"]), "cpu")   # the text model's cost depends on the 77 positions, not the vocabulary
    loaded = rss()
    rng = np.random.default_rng(0)
    pics = [Image.fromarray(rng.integers(0, 255, (a.size, a.size, 3), dtype=np.uint8)) for _ in range(a.n)]
    out = {}
    for kind in ("dino", "clip"):
        embed_images(sc, pics[:1], kind)                                                     # warm-up
        t0 = time.perf_counter(); f = embed_images(sc, pics, kind); out[f"{kind}_s_per_image"] = round((time.perf_counter() - t0) / a.n, 4)
        out[f"{kind}_dim"] = f.shape[1]
    t0 = time.perf_counter(); embed_texts(sc, ["zxq disc on a blue background"] * a.n); out["clip_text_s_per_prompt"] = round((time.perf_counter() - t0) / a.n, 4)
    print(json.dumps(dict(device=f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)", date=time.strftime("%Y-%m-%d"), size=a.size, n=a.n,
                          params=params, weight_bytes_fp32=4 * sum(params.values()), rss_after_load=loaded - before, peak_rss_growth=rss() - before,
                          torch=torch.__version__, **out)))

if __name__ == "__main__": main()
