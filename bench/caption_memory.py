"""Captioner memory (and CPU time) at real size: Qwen3-VL-2B-Instruct's dimensions with random weights, one caption
batch through zimage_nb.caption.describe, tensors counted by zimage_nb.planner.TensorPeak.

    python bench/caption_memory.py --res 512 1024 --batch 1 4          # anywhere (minutes on a 2-core CPU)
    python bench/caption_memory.py --res 1024 --batch 4 --device cuda  # on a GPU: also peak allocated / reserved, s/image

Weights are built in bf16 (the model as loaded in bf16 / fp16); the NF4 weight bytes are computed from the Linear layers'
sizes (0.5 byte per weight + double-quantized scales, as bitsandbytes stores them; the embeddings, norms and the
vision patch embedding stay 16-bit). The step peak is what one `describe` call (vision encoder, prefill, greedy decoding
of --tokens new tokens) creates on top of the weights. Dimensions: Qwen3-VL-2B's published config (text model:
Qwen3-1.7B's; vision: 24 blocks of 1024, patch 16, merge 2).
"""
import argparse, json, time
import torch
from PIL import Image

QWEN3_VL_2B = dict(
    text_config=dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                     num_key_value_heads=8, head_dim=128, max_position_embeddings=32768, rope_theta=5000000.0,
                     rope_scaling=dict(rope_type="default", mrope_section=[24, 20, 20], mrope_interleaved=True)),
    vision_config=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048, patch_size=16,
                       spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17]),
    tie_word_embeddings=True)

def real_captioner(device, dtype):
    "The tiny captioner's folder (tokenizer, processor, template) with a real-size random model of the same class."
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from zimage_nb.caption import Captioner, _processor, tiny_captioner_folder
    folder = tiny_captioner_folder()
    proc = _processor(folder)
    proc.image_processor.size = {"shortest_edge": 56 * 56, "longest_edge": 1024 * 1024 * 2}
    tiny = json.loads((folder / "config.json").read_text())
    cfg = Qwen3VLConfig(**QWEN3_VL_2B, image_token_id=tiny["image_token_id"], video_token_id=tiny["video_token_id"],
                        vision_start_token_id=tiny["vision_start_token_id"], vision_end_token_id=tiny["vision_end_token_id"])
    with torch.device(device): model = Qwen3VLForConditionalGeneration(cfg).to(dtype).eval()
    return Captioner(model, proc, "qwen3-vl-2b (random weights)", device, dtype)

def nf4_bytes(model):
    "Weight bytes with the Linear layers in NF4 (as bitsandbytes stores them) and the rest in 16 bits."
    from zimage_nb.planner import WEIGHT_BYTES
    lin = sum(m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in n)
    return lin * WEIGHT_BYTES["nf4"] + (sum(p.numel() for p in model.parameters()) - lin) * 2

def main():
    from zimage_nb.caption import describe, STYLES
    from zimage_nb.planner import TensorPeak
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    ap.add_argument("--tokens", type=int, default=48, help="new tokens generated per caption")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="append rows here")
    a = ap.parse_args()
    dtype = torch.bfloat16
    cap = real_captioner(a.device, dtype)
    w16 = sum(p.numel() * p.element_size() for p in cap.model.parameters())
    w4 = nf4_bytes(cap.model)
    name = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{name}; {sum(p.numel() for p in cap.model.parameters()) / 1e9:.2f} B parameters: weights {w16 / 2**30:.2f} GiB bf16, {w4 / 2**30:.2f} GiB NF4")
    print("| image | batch | image tokens | step peak above the weights | total bf16 | total NF4 | s / image |")
    print("|---|---|---|---|---|---|---|")
    for res in a.res:
        for b in a.batch:
            ims = [Image.new("RGB", (res, res), (10 * i, 120, 200)) for i in range(b)]
            grid = cap.processor.image_processor(images=ims[:1], return_tensors="pt")["image_grid_thw"][0]
            ntok = int(grid.prod() // 4)
            if a.device.startswith("cuda"): torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
            t0 = time.time()
            with TensorPeak() as tp: describe(cap, ims, STYLES["detailed"][0], a.tokens)
            sec = (time.time() - t0) / b
            row = dict(res=res, batch=b, image_tokens=ntok, step_peak=tp.peak, weights_bf16=w16, weights_nf4=w4, s_per_image=sec, device=name, new_tokens=a.tokens)
            if a.device.startswith("cuda"): row.update(alloc=torch.cuda.max_memory_allocated(), reserved=torch.cuda.max_memory_reserved())
            print(f"| {res}² | {b} | {ntok} | {tp.peak / 2**30:.2f} GiB | {(w16 + tp.peak) / 2**30:.2f} GiB | {(w4 + tp.peak) / 2**30:.2f} GiB | {sec:.1f} |", flush=True)
            if a.json:
                with open(a.json, "a") as f: f.write(json.dumps(row) + "\n")

if __name__ == "__main__": main()
