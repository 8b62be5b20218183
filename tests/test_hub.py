"Hub push without network: the card and plan are built, errors say what to do, the token is never shown."
import pytest
from zimage_nb.config import preset
from zimage_nb.core import ZImageError
from zimage_nb.hub import push_to_hub, token_source
from zimage_nb.train import train, write_demo_dataset

@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("hub")
    cfg = preset("tiny", job__output_dir=str(d), job__name="zxq-disc", job__trigger_word="zxq", datasets__0__path=str(write_demo_dataset(d / "photos", n=2)),
                 training__steps=2, save__every=2, sample__every=0, save__hub_repo="someone/zxq-disc", save__push_to_hub=True)
    train(cfg, progress=False)
    return cfg

def test_dry_run_plan_and_card(done_run):
    r = push_to_hub(done_run, dry_run=True)
    assert r["files"] == ["zxq-disc.safetensors", "config.yaml", "README.md"] and r["url"] == "https://huggingface.co/someone/zxq-disc"

def test_offline_upload_fails_clearly_and_never_shows_the_token(done_run, monkeypatch, capsys):
    import huggingface_hub.constants as C
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123"); monkeypatch.setattr(C, "HF_HUB_OFFLINE", True)
    assert token_source() == "environment variable HF_TOKEN"
    with pytest.raises(ZImageError, match="cannot be reached to upload to someone/zxq-disc") as e:
        push_to_hub(done_run)
    assert "hf_secret_value_123" not in str(e.value) + capsys.readouterr().out
