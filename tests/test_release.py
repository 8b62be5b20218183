"Release readiness: floors in one place and verified, the version in one place, the quickstarts' install cell."
import configparser, json, re, types
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
CFG = configparser.ConfigParser(); CFG.read(ROOT / "settings.ini")

def floors_file():
    return dict(l.split("==") for l in (ROOT / "constraints" / "floors.txt").read_text().splitlines() if l and not l.startswith("#"))

def test_settings_floors_are_the_verified_floors():
    reqs = dict(re.match(r"([A-Za-z0-9_.-]+)>=(.+)", r).groups() for r in CFG["DEFAULT"]["requirements"].split())
    norm = lambda n: n.lower().replace("_", "-")
    declared = {norm(k): v for k, v in reqs.items() if k != "torch"}
    assert declared == {norm(k): v for k, v in floors_file().items()}
    assert CFG["DEFAULT"]["min_python"] == "3.11"        # the Python the floors are checked on (diffusers >= 0.42 needs it too)

def test_the_version_lives_in_settings_ini():
    import zimage_nb
    v = CFG["DEFAULT"]["version"]
    assert zimage_nb.__version__ == v
    for nb in ("20_colab_quickstart", "21_kaggle_quickstart"):
        src = "".join("".join(c["source"]) for c in json.loads((ROOT / "nbs" / f"{nb}.ipynb").read_text())["cells"])
        assert f'VERSION = "{v}"' in src, nb               # python tools/sync_version.py writes it
        assert f'REPO = "{CFG["DEFAULT"]["git_url"]}"' in src, nb   # the fallback installs from settings.ini's git_url
    assert f"## {v}" in (ROOT / "CHANGELOG.md").read_text()

def install_cell(nb="20_colab_quickstart"):
    "The quickstart's install cell up to its call (which runs only on Colab / Kaggle)."
    cells = json.loads((ROOT / "nbs" / f"{nb}.ipynb").read_text())["cells"]
    src = next("".join(c["source"]) for c in cells if "def install_zimage_nb" in "".join(c["source"]))
    return src[:src.index("# end of install_zimage_nb")]      # its imports and the function, not the call

class FakePip:
    "Records pip commands; `fail` = substrings of commands that fail; `bump` = versions after the install."
    def __init__(self, fail=(), bump=None): self.calls, self.fail, self.bump = [], fail, bump or {}
    def __call__(self, cmd, **kw):
        self.calls.append(cmd)
        return types.SimpleNamespace(returncode=1 if any(f in " ".join(cmd) for f in self.fail) else 0, stdout="", stderr="No matching distribution found")

@pytest.mark.parametrize("nb", ["20_colab_quickstart", "21_kaggle_quickstart"])
def test_install_cell_installs_the_tag_keeps_torch_and_names_what_needs_a_restart(nb, capsys):
    """Until this project publishes on PyPI, the name there is not ours: whoever registers `zimage-nb` would have their code run
    by every user, so the cell installs the repository's tag and asks PyPI nothing. A library upgraded after it was imported asks
    for a restart, found by its module names (pillow is imported as PIL: a Pillow upgrade under a running kernel fails with
    "_imaging extension was built for another version")."""
    ns = {}; exec(install_cell(nb), ns)
    assert ns["ON_PYPI"] is False
    pip = FakePip()
    before = {"torch": "2.8.0+cu126", "diffusers": "0.35.0", "pillow": "11.0.0", "pyyaml": "6.0"}
    seen = iter([before, dict(before, diffusers="0.42.1", pillow="12.0.0", pyyaml="6.0.2")])
    how = ns["install_zimage_nb"]("0.1.0", "https://github.com/zimage-nb/zimage-nb", run=pip, installed=lambda: next(seen),
                                  imported=lambda: {"torch", "pillow", "diffusers"})          # yaml not imported yet: no restart for it
    (cmd,) = pip.calls
    assert cmd[-1] == "git+https://github.com/zimage-nb/zimage-nb@v0.1.0" and not any("zimage-nb==" in c for c in cmd)
    assert Path(cmd[cmd.index("-c") + 1]).read_text().split() == ["torch==2.8.0+cu126"]   # the image's torch is kept
    out = capsys.readouterr().out
    assert "restart the runtime" in out.lower() and "diffusers 0.35.0 -> 0.42.1" in out and "pillow 11.0.0 -> 12.0.0" in out and "pyyaml" not in out
    assert "tag v0.1.0" in how
    pip = FakePip(); seen = iter([before, before])
    ns["install_zimage_nb"]("0.1.0", "x", on_pypi=True, run=pip, installed=lambda: next(seen), imported=set)
    assert pip.calls[0][-1] == "zimage-nb==0.1.0"                                          # once published: the pinned release

def test_the_restart_check_knows_module_names_from_distribution_names():
    ns = {}; exec(install_cell(), ns)
    import PIL, yaml                                                                      # noqa: F401 (imported, as a runtime has them)
    pip, seen = FakePip(), iter([{"pillow": "11.0.0", "pyyaml": "6.0"}, {"pillow": "12.0.0", "pyyaml": "6.0.2"}])
    import io, contextlib
    with contextlib.redirect_stdout(io.StringIO()) as out: ns["install_zimage_nb"]("0.1.0", "x", run=pip, installed=lambda: next(seen))
    assert "pillow 11.0.0 -> 12.0.0" in out.getvalue() and "pyyaml 6.0 -> 6.0.2" in out.getvalue()

def test_install_cell_does_nothing_when_the_version_is_there():
    ns = {}; exec(install_cell(), ns)
    pip = FakePip()
    assert ns["install_zimage_nb"]("0.1.0", "x", run=pip, installed=lambda: {"torch": "2.8", "zimage-nb": "0.1.0"}) == "already installed" and pip.calls == []

def test_quickstart_badges_open_this_repository():
    repo = CFG["DEFAULT"]["git_url"].removeprefix("https://github.com/")
    for nb, host in (("20_colab_quickstart", "colab.research.google.com/github/"), ("21_kaggle_quickstart", "kaggle.com/kernels/welcome?src=https://github.com/")):
        first = "".join(json.loads((ROOT / "nbs" / f"{nb}.ipynb").read_text())["cells"][0]["source"])
        assert f"{host}{repo}/blob/main/nbs/{nb}.ipynb" in first, nb
        assert f"{host}{repo}/blob/main/nbs/{nb}.ipynb" in (ROOT / "README.md").read_text()
