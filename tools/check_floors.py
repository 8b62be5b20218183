"""Install zimage-nb with its declared dependency floors, in a fresh virtual environment, and run the offline demo and a
fast subset of the tests there: the floors in settings.ini are true only while this passes.

    python tools/check_floors.py                      # the floors in constraints/floors.txt
    python tools/check_floors.py --constraints F.txt --explore  # a candidate set before declaring it
    python tools/check_floors.py --keep /tmp/venv     # keep (and reuse) the environment

`make test` runs it (CI). The floors file pins every runtime dependency (and the few of theirs that the floors need
pinned to install together) at its oldest version that passed; `tests/test_release.py` checks that settings.ini's
`>=` floors are exactly the versions pinned here. torch is installed from the environment's own build (Colab and
Kaggle bring theirs; here the CPU build), never from this file.
"""
import argparse, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST_TESTS = ["tests/test_config.py", "tests/test_data.py", "tests/test_loading.py", "tests/test_cache.py", "tests/test_caption.py",
              "tests/test_sample.py", "tests/test_hub.py", "tests/test_train.py::test_loss_falls", "tests/test_train.py::test_exported_lora_loads_in_diffusers",
              "tests/test_train.py::test_adapter_removed_equals_base", "tests/test_offload.py::test_offloaded_training_gives_the_same_lora"]

def sh(cmd, env=None, cwd=ROOT):
    print("$", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], env=env, cwd=cwd)

def torch_spec()->list:
    "The torch this machine runs, as a pip argument: the same build in the new environment."
    import importlib.metadata as md
    v = md.version("torch")
    local = sorted(Path("/opt/wheels").glob(f"torch-{v.replace('+', '*')}*.whl")) if Path("/opt/wheels").exists() else []
    return [str(local[0])] if local else [f"torch=={v.split('+')[0]}"]

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--constraints", default=str(ROOT / "constraints" / "floors.txt"))
    ap.add_argument("--keep", help="the environment's folder (kept, and reused if it exists)")
    ap.add_argument("--tests", nargs="*", default=FAST_TESTS)
    ap.add_argument("--explore", action="store_true", help="try a candidate set that settings.ini does not declare yet (pip check only reported)")
    a = ap.parse_args(argv)
    venv = Path(a.keep or tempfile.mkdtemp(prefix="zimage-floors-"))
    py = venv / "bin" / "python"
    t0 = time.time()
    if not py.exists():
        if sh([sys.executable, "-m", "venv", venv], cwd=None).returncode: return 1
        if sh([py, "-m", "pip", "install", "-q", *torch_spec()]).returncode: return 1
    cons = Path(a.constraints).resolve()
    if sh([py, "-m", "pip", "install", "-q", "-r", cons, "pytest"]).returncode or sh([py, "-m", "pip", "install", "-q", "--no-deps", "-e", "."]).returncode:
        print(f"FLOORS DO NOT INSTALL TOGETHER: {cons}"); return 1
    if sh([py, "-m", "pip", "check"]).returncode and not a.explore:      # zimage-nb's own requirements included
        print(f"FLOORS CONFLICT (pip check): {cons}"); return 1
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    work = Path(tempfile.mkdtemp(prefix="zimage-floors-demo-"))
    ok = sh([venv / "bin" / "zimage-nb", "demo", "--steps", "20"], env=env, cwd=work).returncode == 0
    ok = ok and sh([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *a.tests], env=env).returncode == 0
    shutil.rmtree(work, ignore_errors=True)
    if not a.keep: shutil.rmtree(venv, ignore_errors=True)
    print(f"{'FLOORS OK' if ok else 'FLOORS FAIL'}: {cons.name} ({time.time() - t0:.0f} s)")
    return 0 if ok else 1

if __name__ == "__main__": sys.exit(main())
