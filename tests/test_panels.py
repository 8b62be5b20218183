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

def test_uploads_in_every_form_and_incomplete_ones_named(tmp_path):
    "ipywidgets 7 (Colab) and 8 deliver FileUpload values differently; a file Colab's widget drops (1 MB or more) is named, the rest kept."
    import io
    from PIL import Image
    from zimage_nb.panels import DatasetPanel
    b = io.BytesIO(); Image.new("RGB", (96, 64), "red").save(b, format="PNG"); png = b.getvalue()
    cp = ConfigPanels(preset("tiny", job__output_dir=str(tmp_path), job__name="up", datasets__0__default_caption="a photo"))
    dp = DatasetPanel(cp)
    if int(W.__version__.split(".")[0]) >= 8:
        value = ({"name": "a.png", "size": len(png), "content": memoryview(png)}, {"name": "phone.jpg", "size": 3_400_000, "content": memoryview(b"")})
    else:
        value = {"a.png": {"metadata": {"name": "a.png", "size": len(png)}, "content": png}, "phone.jpg": {"metadata": {"name": "phone.jpg", "size": 3_400_000}, "content": b""}}
    rep = dp.take_upload(value)
    assert [r.file for r in rep.usable] == ["a.png"]
    assert "phone.jpg" in dp.report.value and "arrived incomplete" in dp.report.value and "issue 3452" in dp.report.value
    assert dp.take_upload({"b.png": png}).usable    # google.colab.files.upload()'s form: {name: bytes}

def test_tab_bar_keeps_the_page_across_rebuilds():
    p = ConfigPanels(preset("tiny"))
    p.tabs.bar.value = "Training"
    assert p.tabs.page.children[0] is p.tabs.pages[PANELS.index("training")]
    p.add_dataset.click()                       # the panels are rebuilt with a second dataset
    assert p.tabs.bar.value == "Training" and "datasets.1.path" in p.widgets

def test_on_colab_the_upload_button_gives_way_to_the_upload_cell(monkeypatch):
    import sys, types
    from zimage_nb.panels import DatasetPanel
    dp = DatasetPanel(ConfigPanels(preset("tiny")))
    def children(w): return [w] + [c for x in getattr(w, "children", ()) for c in children(x)]
    assert dp.upload in children(dp.widget()) and "10 MB" in dp.upload_note.value      # Kaggle: Jupyter's message limit, said before it bites
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    shown = children(dp.widget())
    assert dp.upload not in shown and dp.upload_note in shown and "upload cell" in dp.upload_note.value
