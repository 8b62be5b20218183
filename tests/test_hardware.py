from zimage_nb.hardware import KNOWN_GPUS, HardwareProfile, apply_suggestions, suggest_settings
from zimage_nb.config import preset

def test_t4_gets_nf4_fp16_safe_512_768_and_no_offload():
    c = apply_suggestions(preset(), suggest_settings(KNOWN_GPUS["T4"]))
    assert (c.quantization.transformer, c.quantization.text_encoder, c.quantization.compute) == ("nf4", "nf4", "fp16-safe")
    assert c.datasets[0].resolutions == [512, 768] and c.advanced.offload == "none" and c.advanced.num_workers == 0   # training does not offload

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
