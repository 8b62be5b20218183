"Config: every validation message, presets, YAML round-trip."
import warnings
import pytest
from zimage_nb.config import (PRESETS, ConfigError, config_schema, load_config, preset, save_config, set_path, validate_config)
from zimage_nb.core import ZImageError

SCHEMA = config_schema()

def problems(cfg):
    with pytest.raises(ConfigError) as e: validate_config(cfg)
    return dict(e.value.problems), str(e.value)

def _path(r): return f"datasets[0].{r['name']}" if r["panel"] == "datasets" else r["path"]
def _set(cfg, r, v): set_path(cfg, r["path"].replace("datasets.", "datasets.0."), v)

@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_validate_and_round_trip(name, tmp_path):
    cfg = preset(name)
    with warnings.catch_warnings(): warnings.simplefilter("ignore"); validate_config(cfg, ready=False)
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg

@pytest.mark.parametrize("r", [r for r in SCHEMA if r["choices"]], ids=lambda r: r["path"])
def test_every_choice_field_rejects_unknown_values(r):
    cfg = preset("de-turbo"); _set(cfg, r, "nonsense")
    probs, msg = problems(cfg)
    assert f"'nonsense' is not one of {', '.join(r['choices'])}" in probs[_path(r)]

@pytest.mark.parametrize("r", [r for r in SCHEMA if r["lo"] is not None and r["type"] in ("int", "float")], ids=lambda r: r["path"])
def test_every_number_below_its_range_is_reported(r):
    cfg = preset("de-turbo"); bad = r["lo"] - 1 if r["type"] == "int" else r["lo"] - 0.5
    _set(cfg, r, bad if not r["lo_open"] else r["lo"])
    probs, _ = problems(cfg)
    assert ("is below" in probs[_path(r)]) or ("is not above" in probs[_path(r)])

@pytest.mark.parametrize("r", [r for r in SCHEMA if r["hi"] is not None and r["type"] in ("int", "float")], ids=lambda r: r["path"])
def test_every_number_above_its_range_is_reported(r):
    cfg = preset("de-turbo"); _set(cfg, r, r["hi"] + 32 if r["type"] == "int" else r["hi"] * 2)
    probs, _ = problems(cfg)
    assert f"is above {r['hi']}" in probs[_path(r)]

@pytest.mark.parametrize("r", [r for r in SCHEMA if r["type"] == "bool"], ids=lambda r: r["path"])
def test_every_switch_must_be_true_or_false(r):
    cfg = preset("de-turbo"); _set(cfg, r, "yes")
    assert "'yes' is not true/false" in problems(cfg)[0][_path(r)]

def test_sizes_must_be_multiples_of_32_and_the_fix_is_named():
    cfg = preset("de-turbo"); cfg.sample.width = 1000; cfg.datasets[0].resolutions = [512, 700]
    probs, msg = problems(cfg)
    assert "use 992 or 1024" in probs["sample.width"]
    assert "use 672 or 704" in probs["datasets[0].resolutions[1]"]
    assert "Fix:" in msg

def test_all_problems_are_listed_at_once():
    cfg = preset("de-turbo", target__rank=0, training__lr=0.0, job__name="my lora", datasets__0__path="photos")
    probs, msg = problems(cfg)
    assert {"target.rank", "training.lr", "job.name"} <= set(probs)
    assert msg.startswith("3 invalid settings")

def test_type_errors():
    cfg = preset("de-turbo", target__rank=2.5, training__steps="many", datasets__0__resolutions=[])
    probs, _ = problems(cfg)
    assert "2.5 is not an integer" in probs["target.rank"]
    assert "'many' is not an integer" in probs["training.steps"]
    assert "the list is empty" in probs["datasets[0].resolutions"]

def test_cross_field_rules():
    probs, _ = problems(preset(save__push_to_hub=True))
    assert "hub_repo is not 'user/name'" in probs["save.hub_repo"]
    probs, _ = problems(preset(model__distill_patch="DiffSynth-Studio/Z-Image-Turbo-DistillPatch"))
    assert "two alternative recipes" in probs["model.distill_patch"]
    cfg = preset(); cfg.datasets = []
    assert "no dataset" in problems(cfg)[0]["datasets"]

def test_turbo_guidance_is_a_warning_not_an_error():
    with pytest.warns(UserWarning, match=r"sample.cfg_scale = 2.5 on Turbo"):
        ws = validate_config(preset(sample__cfg_scale=2.5), ready=False)
    assert len(ws) == 1

def test_plain_lora_on_turbo_warns_about_drift():
    with pytest.warns(UserWarning, match="drifts"):
        validate_config(preset(model__training_adapter=""), ready=False)

def test_unknown_preset_and_field():
    with pytest.raises(ZImageError, match="did you mean 'turbo-adapter-v1'"): preset("turbo-adapter-1")
    with pytest.raises(ZImageError, match="'training.stepz' is not a config field"): preset(training__stepz=3)

def test_yaml_reads_numbers_yaml_left_as_text_and_rejects_typos(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("preset: de-turbo\ntraining:\n  lr: 5e-5\n  steps: 1e3\nsampel:\n  steps: 3\n")
    with pytest.raises(ConfigError, match=r"sampel: unknown panel \(did you mean 'sample'\?\)"): load_config(f)
    f.write_text("preset: de-turbo\ntraining:\n  lr: 5e-5\n  steps: 1e3\n")
    cfg = load_config(f)
    assert (cfg.training.lr, cfg.training.steps, cfg.preset) == (5e-5, 1000, "de-turbo")
    f.write_text("training: [1, 2\n")
    with pytest.raises(ZImageError, match="not valid YAML"): load_config(f)
    with pytest.raises(ZImageError, match="does not exist"): load_config(tmp_path / "none.yaml")

def test_schema_has_help_for_every_field_and_all_panels():
    assert {r["panel"] for r in SCHEMA} == {"job", "model", "quantization", "target", "save", "training", "datasets", "sample", "advanced"}
    assert all(len(r["help"]) > 10 for r in SCHEMA)

def test_default_preset_is_turbo_with_adapter_v2():
    c = preset()
    assert (c.model.name_or_path, c.model.training_adapter, c.target.rank, c.training.lr, c.training.optimizer, c.training.batch_size) == \
           ("Tongyi-MAI/Z-Image-Turbo", "v2", 16, 1e-4, "adamw8bit", 1)
    assert (c.datasets[0].resolutions, c.sample.every, c.sample.steps, c.sample.cfg_scale) == ([512, 768, 1024], 250, 8, 1.0)
    assert 2500 <= c.training.steps <= 3000 and c.training.cache_latents and c.training.cache_text_embeddings

def test_uncached_training_is_refused_with_the_reason():
    import pytest
    from zimage_nb.config import ConfigError, preset, validate_config
    with pytest.raises(ConfigError, match="training.cache_latents: training without caches is not supported yet"):
        validate_config(preset(datasets__0__path="x", training__cache_latents=False))

# ---- config files as people break them

@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "cp1252"])
def test_configs_saved_by_any_editor_load(tmp_path, encoding):
    f = tmp_path / "c.yaml"
    f.write_bytes("job:\n  trigger_word: café\ntraining:\n  lr: 2.0e-4\n".encode(encoding))
    c = load_config(f)
    assert c.job.trigger_word == "café" and c.training.lr == 2e-4

@pytest.mark.parametrize("raw,msg", [
    (b"training:\n  lr: 1e-4\x00\n", "is not a text file: a binary byte (code 0) on line 2"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not a text file"),
    (b"- 1\n- 2\n", "expected a mapping of panels (job:, model:, training:, ...), found a list"),
    (b"just some words", "found a str"),
    (b"training: [1, 2\n", "is not valid YAML"),
    (b"datasets:\n  path: photos\n", "expected a list of datasets"),
    (b"training: 3\n", "training: expected a mapping of fields"),
])
def test_broken_config_files_are_errors_not_tracebacks(tmp_path, raw, msg):
    f = tmp_path / "c.yaml"; f.write_bytes(raw)
    with pytest.raises(ZImageError, match=msg.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")): load_config(f)

def test_every_problem_at_once_even_with_a_typo(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("trainig:\n  lr: 1\ntarget:\n  rank: 0\n  alpah: 3\nsample:\n  width: 1000\ndatasets:\n  - resolutions: [500]\n")
    with pytest.raises(ConfigError) as e: load_config(f)
    assert [p for p, _ in e.value.problems] == ["trainig", "target.alpah", "target.rank", "datasets[0].resolutions[0]", "sample.width"]
    assert "did you mean 'training'" in str(e.value) and "did you mean 'alpha'" in str(e.value)

def test_empty_dataset_path_is_a_problem_when_ready_only():
    with pytest.raises(ConfigError, match=r"datasets\[0\].path: is empty"): validate_config(preset("de-turbo"))
    assert validate_config(preset("de-turbo"), ready=False) == []

def test_report_to_names_trackers_and_old_configs_still_load():
    import pytest
    from zimage_nb.config import config_from_dict, validate_config, ConfigError
    c = config_from_dict({"job": {"tracker": "wandb"}})                   # written before job.report_to existed
    assert c.job.report_to == ["tensorboard", "wandb"]
    assert config_from_dict({"job": {"tracker": "none"}}).job.report_to == ["tensorboard"]
    with pytest.raises(ConfigError, match="'wandbb' is not a tracker.*did you mean 'wandb'"):
        validate_config(preset(datasets__0__path="x", job__report_to=["tensorboard", "wandbb"]))
