"""Write settings.ini's version into the places that cannot import the package: the quickstarts' install cells.

    python tools/sync_version.py         # after changing `version` in settings.ini (then nbdev_export writes __init__.py)

tests/test_release.py fails while they disagree."""
import configparser, json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def main():
    cfg = configparser.ConfigParser(); cfg.read(ROOT / "settings.ini")
    v = cfg["DEFAULT"]["version"]
    for nb in sorted((ROOT / "nbs").glob("2?_*quickstart.ipynb")):
        d = json.loads(nb.read_text())
        for c in d["cells"]:
            c["source"] = [re.sub(r'^VERSION = "[^"]*"', f'VERSION = "{v}"', line) for line in c["source"]]
        nb.write_text(json.dumps(d, indent=1, ensure_ascii=False) + "\n")
        print(f"{nb.name}: VERSION = {v}")

if __name__ == "__main__": main()
