"""Write README.md from nbs/index.ipynb (markdown as is, code cells as python blocks; `#|` cells skipped).

nbdev 2's own nbdev_readme needs Quarto, a binary download; this keeps the README generated from the notebook
without it. `--check` exits 1 if README.md is not what the notebook gives.
"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]

def readme_text(nb_path=root / "nbs" / "index.ipynb") -> str:
    parts = ["<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->"]
    for c in json.loads(Path(nb_path).read_text())["cells"]:
        src = "".join(c["source"]).strip()
        if not src or (c["cell_type"] == "code" and src.startswith("#|")): continue
        if c["cell_type"] == "markdown": src = src.replace("](images/", "](nbs/images/")   # pictures sit beside the notebook
        parts.append(src if c["cell_type"] == "markdown" else f"```python\n{src}\n```")
    return "\n\n".join(parts) + "\n"

if __name__ == "__main__":
    text, readme = readme_text(), root / "README.md"
    if "--check" in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit("README.md is out of date with nbs/index.ipynb: run python tools/make_readme.py")
        print("README.md is up to date")
    else:
        readme.write_text(text); print(f"wrote {readme}")
