"""Write the docs site: one HTML page per notebook of nbs/ (prose, code, and the outputs saved in it: tables, grids,
plots), a sidebar in the data's order, and index.html from nbs/index.ipynb.

    python tools/make_docs.py [--out _docs]

nbdev 2's `nbdev_docs` renders with Quarto, and the quarto-cli package on PyPI is a source archive whose build downloads
the Quarto binary from github.com (quarto-cli 1.11.9's setup.py, `download_quarto`), which this project's machines cannot
reach; nbconvert (PyPI) renders the same notebooks. Cells marked `#| hide` and the `#|` directive lines are left out, as
nbdev's pages leave them out.
"""
import argparse, copy, html, json, re, shutil
from pathlib import Path
import nbformat
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parents[1]
NAV_CSS = """<style>
.zimage-nav{position:fixed;top:0;left:0;width:230px;height:100%;overflow:auto;padding:12px;font:13px sans-serif;background:#f6f6f6;border-right:1px solid #ddd;z-index:10}
.zimage-nav a{display:block;padding:2px 0;color:#333;text-decoration:none}.zimage-nav a.here{font-weight:bold}
body{margin-left:250px!important}
</style>"""

def page_name(nb:Path)->str: return "index.html" if nb.stem == "index" else f"{nb.stem}.html"

def title(nb:dict, fallback:str)->str:
    "The notebook's first '# ' heading."
    for c in nb["cells"]:
        if c["cell_type"] == "markdown" and (m := re.search(r"^# (.+)$", "".join(c["source"]), re.M)): return m.group(1).strip()
    return fallback

def for_reading(nb:dict)->dict:
    "The notebook as its page shows it: no `#| hide` or `#| default_exp` cells, no `#|` lines, no widget views (their saved text instead)."
    nb = copy.deepcopy(nb)
    keep = []
    for c in nb["cells"]:
        src = "".join(c["source"])
        if c["cell_type"] == "code":
            if re.match(r"#\|\s*(hide|default_exp)\b", src): continue
            c["source"] = "\n".join(l for l in src.splitlines() if not l.startswith("#|")).strip("\n")
            for o in c.get("outputs", []): o.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)
        keep.append(c)
    nb["cells"] = keep
    nb["metadata"].pop("widgets", None)
    nb["nbformat_minor"] = min(nb.get("nbformat_minor", 4), 4)   # the notebooks' cells carry no ids (nbformat 4.5 asks for them)
    return nb

def build(out:Path=ROOT / "_docs")->list[Path]:
    "Write every page and the pictures they link to; returns the pages."
    nbs = sorted((ROOT / "nbs").glob("*.ipynb"), key=lambda p: (p.stem != "index", p.stem))
    books = {p: json.loads(p.read_text()) for p in nbs}
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    if (ROOT / "nbs" / "images").is_dir(): shutil.copytree(ROOT / "nbs" / "images", out / "images")
    exporter = HTMLExporter(template_name="lab", exclude_input_prompt=True, exclude_output_prompt=True)
    pages = []
    for p, nb in books.items():
        nav = "".join(f'<a href="{page_name(q)}"{" class=here" if q == p else ""}>{html.escape(q.stem if q.stem != "index" else "zimage-nb")}</a>' for q in nbs)
        body, _ = exporter.from_notebook_node(nbformat.reads(json.dumps(for_reading(nb)), as_version=4), resources={"metadata": {"name": title(nb, p.stem)}})
        body = body.replace("</head>", NAV_CSS + "</head>", 1)
        body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + f'<nav class="zimage-nav">{nav}</nav>', body, count=1)
        (out / page_name(p)).write_text(body); pages.append(out / page_name(p))
    return pages

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "_docs"))
    pages = build(Path(ap.parse_args().out))
    print(f"wrote {len(pages)} pages to {pages[0].parent}")
