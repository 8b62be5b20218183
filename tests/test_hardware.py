import pytest
from zimage_nb.hardware import KNOWN_GPUS, HardwareProfile, pcie_rate
from zimage_nb.planner import Suggestion, apply_suggestions, suggest_settings, estimate_training
from zimage_nb.config import preset

def test_t4_gets_nf4_fp16_safe_512_768_and_no_offload():
    c = apply_suggestions(preset(), suggest_settings(KNOWN_GPUS["T4"]))
    assert (c.quantization.transformer, c.quantization.text_encoder, c.quantization.compute) == ("nf4", "nf4", "fp16-safe")
    assert c.datasets[0].resolutions == [512, 768] and c.advanced.offload == "none" and c.advanced.num_workers == 0
    assert not c.advanced.train_offload                      # it fits without: no copies to pay for

def test_offload_is_suggested_where_only_it_fits():
    s = suggest_settings(KNOWN_GPUS["3050L-4G"])
    c = apply_suggestions(preset(), s)
    assert c.advanced.train_offload and c.datasets[0].resolutions == [512]
    why = s[-1].why
    assert "GiB estimated without it" in why and "pinned in host RAM" in why and "s of copies per step" in why
    without = apply_suggestions(c, [Suggestion("advanced.train_offload", False, "")])
    assert not estimate_training(without, "3050L-4G").fits and estimate_training(c, "3050L-4G").fits
    big_rank = preset(target__rank=128)                      # what a 6 GB card cannot hold without offload
    assert "advanced.train_offload" in [x.path for x in suggest_settings(KNOWN_GPUS["2060-6G"], big_rank)]
    assert "advanced.train_offload" not in [x.path for x in suggest_settings(KNOWN_GPUS["2060-6G"])]

def test_pcie_rates_of_known_cards():
    assert pcie_rate(3, 16) == 12.6 and pcie_rate(4, 8) == pcie_rate(3, 16) and pcie_rate(4, 16) == 25.2
    assert KNOWN_GPUS["T4"].pcie_gbps == 12.6 and KNOWN_GPUS["3070-8G"].pcie_gbps == 25.2 and KNOWN_GPUS["4060-8G"].pcie_gbps == 12.6

def test_bf16_is_native_from_ampere():
    assert not KNOWN_GPUS["T4"].bf16 and not KNOWN_GPUS["P100"].bf16
    assert KNOWN_GPUS["L4"].bf16 and KNOWN_GPUS["3060-12G"].bf16

def test_10gb_card_gets_512_only_and_big_cards_less_quantization():
    assert apply_suggestions(preset(), suggest_settings(KNOWN_GPUS["3080-10G"])).datasets[0].resolutions == [512]
    assert apply_suggestions(preset(), suggest_settings(KNOWN_GPUS["A100-80G"])).quantization.transformer == "bf16"

def test_cpu_says_so():
    hw = HardwareProfile("cpu", host_ram_gb=24)
    assert "No CUDA GPU" in str(hw)
    assert apply_suggestions(preset(), suggest_settings(hw)).quantization.compute == "fp32"

def test_apply_does_not_change_the_input():
    c = preset(); apply_suggestions(c, suggest_settings(KNOWN_GPUS["T4"]))
    assert c == preset()

def test_a_card_this_torch_cannot_run_is_refused_before_any_download(monkeypatch, tmp_path):
    """Kaggle's P100 with Kaggle's cu128 torch (sm_70 to sm_120: Kaggle/kaggle-cli issue 1151, Kaggle/docker-python issue 1546):
    is_available() says True and the first kernel fails. On a P100 stand-in, train stops first, naming the accelerator to choose;
    the model named here does not exist, so a download attempt would fail differently."""
    import torch
    from zimage_nb.config import preset
    from zimage_nb.core import ZImageError
    from zimage_nb.train import train
    from zimage_nb.tiny import write_demo_dataset
    import fake_cuda as FC
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"])
    cfg = preset(job__output_dir=str(tmp_path), model__name_or_path="Some-Org/Not-Downloaded", datasets__0__path=str(write_demo_dataset(tmp_path / "p", n=2)))
    with FC.DeviceTracker("P100"):
        with pytest.raises(ZImageError, match=r"(?s)no kernels for .*compute 6\.0.*Settings > Accelerator > GPU T4 x2"): train(cfg, progress=False)
    with FC.DeviceTracker("T4"):
        from zimage_nb.hardware import cuda_arch_problem
        assert cuda_arch_problem() is None
