"The package's layout: no module imports one that imports it back (top-level or inside a function), so each notebook can be read on its own terms."
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "zimage_nb"

def imports_of(path:Path)->set:
    "zimage_nb modules a module imports anywhere in its code."
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1: mod = node.module or ""
            elif (node.module or "").startswith("zimage_nb"): mod = node.module.removeprefix("zimage_nb").lstrip(".")
            else: continue
            out |= {mod.split(".")[0]} if mod else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("zimage_nb.")}
    return out - {"_modidx", ""}

def graph()->dict:
    mods = {p.stem for p in PKG.glob("*.py") if p.stem not in ("__init__", "_modidx")}
    return {m: imports_of(PKG / f"{m}.py") & mods - {m} for m in mods}

def test_no_module_imports_one_that_imports_it_back():
    g, cycles = graph(), []
    def walk(m, stack):
        for n in sorted(g[m]):
            if n in stack: cycles.append(stack[stack.index(n):] + [n])
            elif n not in done: walk(n, stack + [n])
        done.add(m)
    done = set()
    for m in sorted(g): walk(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)

def test_the_engine_is_split_by_role():
    g = graph()
    assert {"flow", "checkpoints"} <= set(g)
    assert "train" not in g["sample"] and "train" not in g["checkpoints"] and "train" not in g["flow"]
    assert g["flow"] == set()                    # the maths stands alone
