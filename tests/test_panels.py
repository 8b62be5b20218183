"The panels, headless: generated from the schema, bound both ways, problems named."
import ipywidgets as W
from zimage_nb.config import config_schema, preset, PANELS, load_config, save_config
from zimage_nb.hardware import KNOWN_GPUS
from zimage_nb.panels import ConfigPanels

def test_one_widget_per_schema_field_and_one_tab_per_panel():
    p = ConfigPanels(preset("tiny"))
    want = {r["path"] if r["panel"] != "datasets" else f"datasets.0.{r['name']}" for r in config_schema()}
    assert set(p.widgets) == want
    assert [p.tabs.get_title(i) for i in range(len(PANELS))] == [x.capitalize() for x in PANELS]
    assert isinstance(p.widgets["training.optimizer"], W.Dropdown) and isinstance(p.widgets["training.gradient_checkpointing"], W.Checkbox)

def test_widgets_to_config_and_back(tmp_path):
    p = ConfigPanels(preset("tiny", datasets__0__path="photos"))
    for path, v in [("job.trigger_word", "zxq"), ("training.optimizer", "lion8bit"), ("training.gradient_checkpointing", False),
                    ("target.rank", 8), ("training.lr", 2e-4), ("sample.prompts", ["a", "b c"]), ("datasets.0.resolutions", [64])]:
        p.set(path, v)
    c = p.cfg
    assert (c.job.trigger_word, c.training.optimizer, c.training.gradient_checkpointing, c.target.rank, c.training.lr, c.sample.prompts, c.datasets[0].resolutions) == \
           ("zxq", "lion8bit", False, 8, 2e-4, ["a", "b c"], [64])
    f = save_config(p.cfg, tmp_path / "c.yaml")                     # what the panels made is a valid, loadable config
    assert load_config(f).training.optimizer == "lion8bit"
    p.cfg = load_config(f); p.cfg.training.steps = 77; p.refresh()
    assert p.widgets["training.steps"].value == 77 and p.widgets["training.optimizer"].value == "lion8bit"

def test_problems_are_listed_outlined_and_cleared():
    p = ConfigPanels(preset("tiny", datasets__0__path="photos"))
    p.set("sample.width", 70); p.set("training.dop_class_word", "woman")
    paths = [x for x, _ in p.problems]
    assert "sample.width" in paths and "training.dop_class_word" in paths
    assert "not a multiple of 32" in p.messages.value and "job.trigger_word is empty" in p.messages.value
    assert p.widgets["sample.width"].layout.border and p.widgets["training.dop_class_word"].layout.border
    p.set("sample.width", 64); p.set("job.trigger_word", "zxq")
    assert p.problems == [] and not p.widgets["sample.width"].layout.border

def test_hardware_button_and_presets():
    p = ConfigPanels(preset(job__trigger_word="zxq", datasets__0__path="photos"), hardware=KNOWN_GPUS["T4"])
    p.suggest.click()
    assert p.cfg.quantization.compute == "fp16-safe" and p.widgets["quantization.compute"].value == "fp16-safe"
    p.preset.value = "turbo-distillpatch"
    assert p.cfg.model.distill_patch and p.cfg.job.trigger_word == "zxq" and p.widgets["model.distill_patch"].value == p.cfg.model.distill_patch
