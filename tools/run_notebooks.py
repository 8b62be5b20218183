"""Execute the notebooks and save them with their outputs, so that a reader on GitHub sees the reports, grids and plots.

    python tools/run_notebooks.py                 # every notebook in nbs/ (a few minutes on 2 CPU cores)
    python tools/run_notebooks.py nbs/03_tiny.ipynb nbs/09_sample.ipynb
    python tools/run_notebooks.py --demo-grid     # only the README's picture: nbs/images/demo_grid.png from `zimage-nb demo`

Each notebook runs top to bottom in its own process on the tiny offline model (as `nbdev_test` runs it), then its outputs
are made deterministic so that running it again changes nothing unless a result changed: temporary folders, the home
folder and this checkout become `<tmp>`, `~` and `.`, durations become `<t>`, object addresses `0x…`, widget outputs
keep only their text form (their state cannot be shown outside a live kernel), and execution counts restart at 1.
Pictures are PNG from fixed seeds on the CPU. A notebook that fails is left unchanged and reported; the others still run.
"""
import json, os, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TMP = re.compile(r"(/private)?(/tmp|/var/folders/[\w/]+?/T)/[\w.\-]+")
DURATION = re.compile(r"\b\d+(\.\d+)?( ?)(ms|s|sec|seconds|min|minutes)(?=\b|/)")
RATE = re.compile(r"\b\d+(\.\d+)?(s/it|it/s|s/step)\b")
ADDRESS = re.compile(r"\bat 0x[0-9a-f]+")

def normalise_text(s:str)->str:
    "One output's text with what changes from run to run replaced."
    s = s.replace(str(ROOT), ".").replace(str(Path.home()), "~")
    s = TMP.sub("<tmp>", s)
    s = RATE.sub(r"<t>\2", s)
    s = DURATION.sub(r"<t>\2\3", s)
    return ADDRESS.sub("at 0x…", s)

def normalise(nb:dict)->dict:
    "The notebook with deterministic outputs (see the module docstring)."
    n = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code": continue
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k not in ("execution", "ExecuteTime")}
        outs = []
        for o in cell.get("outputs", []):
            if o.get("name") == "stderr": continue                                 # warnings and progress bars
            data = o.get("data")
            if data is not None:
                data.pop("application/vnd.jupyter.widget-view+json", None)
                for k in list(data):
                    if k.startswith("text/") or k == "application/json":
                        v = data[k]; data[k] = [normalise_text(x) for x in v] if isinstance(v, list) else normalise_text(v)
                if not data: continue
            if "text" in o:
                o["text"] = [normalise_text(x) for x in o["text"]] if isinstance(o["text"], list) else normalise_text(o["text"])
            outs.append(o)
        n += 1
        cell["execution_count"] = n if outs or cell.get("execution_count") else None
        for o in outs:
            if "execution_count" in o: o["execution_count"] = cell["execution_count"]
        cell["outputs"] = outs
    nb.get("metadata", {}).pop("widgets", None)
    return nb

def run_one(path:Path)->tuple[bool, str]:
    "Execute `path` in a fresh process (execnb, as nbdev_test does) and write it back normalised."
    code = ("import sys; from execnb.shell import CaptureShell; "
            "CaptureShell(mpl_format='png').execute(sys.argv[1], sys.argv[2], exc_stop=True)")
    out = path.with_suffix(".run.ipynb")
    env = dict(os.environ, PYTHONHASHSEED="0", MPLBACKEND="agg", TQDM_DISABLE="1")
    r = subprocess.run([sys.executable, "-c", code, str(path), str(out)], capture_output=True, text=True, env=env, cwd=path.parent)
    if r.returncode or not out.exists():
        out.unlink(missing_ok=True)
        return False, (r.stderr or r.stdout)[-1500:]
    nb = normalise(json.loads(out.read_text()))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n"); os.replace(tmp, path); out.unlink()
    return True, ""

def demo_grid():
    "Run the offline demo and keep its comparison grid as the README's picture."
    import shutil, tempfile
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run(["zimage-nb", "demo", "--out", d], capture_output=True, text=True)
        if r.returncode: sys.exit(f"the demo failed:\n{r.stderr[-1500:]}")
        dest = ROOT / "nbs" / "images" / "demo_grid.png"; dest.parent.mkdir(exist_ok=True)
        shutil.copyfile(Path(d) / "comparison_grid.png", dest.with_suffix(".tmp")); os.replace(dest.with_suffix(".tmp"), dest)
        print(f"ok   {dest.relative_to(ROOT)}")

def main(argv=None):
    args = list(argv or sys.argv[1:])
    if "--demo-grid" in args:
        demo_grid(); args.remove("--demo-grid")
        if not args: return
    paths = [Path(p) for p in args] or sorted((ROOT / "nbs").glob("[0-9]*.ipynb")) + [ROOT / "nbs" / "index.ipynb"]
    if not args: demo_grid()
    failed = []
    for p in paths:
        ok, err = run_one(p.resolve())
        print(f"{'ok  ' if ok else 'FAIL'} {p.name}", flush=True)
        if not ok: failed.append(p.name); print(err)
    if failed: sys.exit(f"{len(failed)} notebook(s) failed and were left unchanged: {', '.join(failed)}")

if __name__ == "__main__": main()
