"""The quickstarts as users drive them: each notebook's cells run in a real Jupyter kernel (jupyter_client + ipykernel), on the
tiny offline model, and the test does what a user does while the train cell runs: ■ (a kernel interrupt), or a kernel restart.
Kaggle's two T4 workers are two CPU processes through the same torchrun launch.

Why these: with `run.start(wait=True)` training ran in a thread, and KeyboardInterrupt reaches only the kernel's main thread, so
■ printed "stopping" and the two Kaggle workers trained on; torchrun, started in a session of its own so that ■ does not hit it
(jupyter_client signals the kernel's process group), outlived a kernel restart. A busy kernel handles no widget messages while a
cell runs (ipython/ipykernel issue 65), so the panel's Stop cannot be clicked then: the button says to press ■.
Bounds: the cell ends within 30 s of ■ once training runs (a tiny step is well under a second; the rest is the checkpoint and
the processes' exit); no worker is left 20 s after a restart."""
import json, os, queue, time
from pathlib import Path
import pytest

jupyter_client = pytest.importorskip("jupyter_client")
psutil = pytest.importorskip("psutil")
ROOT = Path(__file__).resolve().parents[1]
WORKER_MARK = "zimage_nb.launch import worker"

def code_cells(name:str)->list[str]:
    return ["".join(c["source"]) for c in json.loads((ROOT / "nbs" / name).read_text())["cells"] if c["cell_type"] == "code"]

class Kernel:
    "A real kernel, driven over Jupyter's messaging protocol."
    def __init__(self, tmp:Path):
        env = dict(os.environ, ZIMAGE_NB_TINY="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
        self.km = jupyter_client.KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env, cwd=str(tmp))
        self.kc = self.km.client(); self.kc.start_channels(); self.kc.wait_for_ready(timeout=120)
    @property
    def pid(self)->int: return self.km.provisioner.process.pid

    def submit(self, code:str)->str: return self.kc.execute(code, store_history=False)

    def wait(self, msg_id:str, timeout:float=600)->tuple[dict, str]:
        "The execute reply of `msg_id` and the text the cell printed."
        out, end = [], time.time() + timeout
        while True:
            try: m = self.kc.get_iopub_msg(timeout=max(0.1, end - time.time()))
            except queue.Empty: raise TimeoutError(f"no reply within {timeout} s; printed: {''.join(out)[-2000:]}")
            if m["parent_header"].get("msg_id") != msg_id: continue
            c = m["content"]
            if m["msg_type"] == "stream": out.append(c["text"])
            elif m["msg_type"] == "error": out.append("\n".join(c["traceback"]))
            elif m["msg_type"] == "status" and c["execution_state"] == "idle": break
        reply = self.kc.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id: reply = self.kc.get_shell_msg(timeout=30)
        return reply["content"], "".join(out)

    def run(self, code:str, timeout:float=600)->str:
        reply, out = self.wait(self.submit(code), timeout)
        assert reply["status"] == "ok", out[-3000:]
        return out

    def close(self):
        self.kc.stop_channels(); self.km.shutdown_kernel(now=True)

@pytest.fixture
def kernel(tmp_path):
    k = Kernel(tmp_path); yield k
    k.close()

def setup_notebook(k:Kernel, name:str, steps:int, processes:int=1, output_dir:str=None, save_every:int=100000)->Path:
    "Run the notebook's cells before its train cell, as a user does, then lengthen the run; returns the run folder."
    cells = code_cells(name)
    train = next(i for i, c in enumerate(cells) if "run.start(wait=True)" in c)
    for c in cells[:train]: k.run(c)
    k.run(f"panels.set('training.steps', {steps}); panels.set('save.every', {save_every}); panels.set('sample.every', 0); panels.set('advanced.num_processes', {processes})"
          + (f"; panels.set('job.output_dir', {output_dir!r})" if output_dir else ""))
    return Path(k.run("from zimage_nb.config import run_folder; print(run_folder(panels.cfg))").strip())

def logged_steps(folder:Path)->list[int]:
    f = folder / "log.jsonl"
    return [json.loads(l)["step"] for l in f.read_text().splitlines() if '"loss"' in l] if f.exists() else []

def wait_for_steps(folder:Path, n:int, timeout:float=300):
    end = time.time() + timeout
    while len(logged_steps(folder)) < n:
        assert time.time() < end, f"fewer than {n} steps logged in {timeout} s"
        time.sleep(0.2)

def workers()->list:
    "torchrun and the workers of a launch (the worker's code is on both command lines)."
    return [p for p in psutil.process_iter(["cmdline"]) if any(WORKER_MARK in (a or "") for a in (p.info["cmdline"] or []))]

def lock_is_free(folder:Path)->bool:
    from zimage_nb.core import FolderLock, ZImageError
    try:
        with FolderLock(folder): return True
    except ZImageError: return False

def train_cell(name:str)->str: return next(c for c in code_cells(name) if "run.start(wait=True)" in c)

@pytest.mark.parametrize("name,processes", [("20_colab_quickstart.ipynb", 1), ("21_kaggle_quickstart.ipynb", 2)])
def test_interrupt_while_training_stops_after_the_step_with_a_checkpoint(kernel, name, processes):
    folder = setup_notebook(kernel, name, steps=100000, processes=processes)
    msg = kernel.submit(train_cell(name))
    wait_for_steps(folder, 8)
    t0 = time.time(); kernel.km.interrupt_kernel()
    reply, out = kernel.wait(msg, timeout=120)
    seconds = time.time() - t0
    assert reply["status"] == "ok" and "stopping after the current step" in out, out[-3000:]
    assert seconds < 30, seconds
    last = logged_steps(folder)[-1]
    from zimage_nb.checkpoints import list_checkpoints, checkpoint_step
    assert [checkpoint_step(c) for c in list_checkpoints(folder / "checkpoints")] == [last]    # the step it stopped at, saved (no periodic save; on Colab a Drive slot)
    assert kernel.run("print(run.result['steps'], run.stop_button.description)").split() == [str(last), "Stop"]
    assert workers() == [] and lock_is_free(folder)
    assert psutil.Process(kernel.pid).children(recursive=True) == []
    print(f"{name}: ■ at step {last}, cell ended in {seconds:.1f} s, checkpoint at step {last}, 0 processes left")

def test_interrupt_before_training_ends_the_cell_at_once(kernel):
    name = "20_colab_quickstart.ipynb"
    folder = setup_notebook(kernel, name, steps=100000)
    msg = kernel.submit(train_cell(name))
    time.sleep(0.5)                                                                       # preparing: caches, loading the model
    t0 = time.time(); kernel.km.interrupt_kernel()
    reply, out = kernel.wait(msg, timeout=120)
    seconds = time.time() - t0
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", out[-2000:]
    assert seconds < 10 and logged_steps(folder) == [] and lock_is_free(folder), seconds
    assert "before training started" in kernel.run("print(run.status.value)")
    print(f"■ while preparing: cell ended in {seconds:.1f} s")

def test_a_kernel_restart_leaves_no_worker_and_the_next_start_resumes(kernel, tmp_path):
    name = "21_kaggle_quickstart.ipynb"
    folder = setup_notebook(kernel, name, steps=100000, processes=2, output_dir=str(tmp_path / "working"), save_every=5)   # /kaggle/working stands still
    kernel.submit(train_cell(name))
    wait_for_steps(folder, 12)
    assert len(workers()) == 3                                                            # torchrun and its two workers
    t0 = time.time(); kernel.km.restart_kernel(now=True)                                 # Run > Restart & clear: the kernel is killed
    while workers() and time.time() - t0 < 20: time.sleep(0.2)
    seconds = time.time() - t0
    assert workers() == [] and lock_is_free(folder), f"{len(workers())} workers after {seconds:.1f} s"
    from zimage_nb.checkpoints import list_checkpoints
    saved = int(list_checkpoints(folder / "checkpoints")[-1].name.split("_")[1])
    kernel.kc.wait_for_ready(timeout=120)
    setup_notebook(kernel, name, steps=saved + 3, processes=2, output_dir=str(tmp_path / "working"), save_every=5)
    out = kernel.run(train_cell(name))
    assert f"resumed from step_{saved:07d}" in out and kernel.run("print(run.result['steps'])").strip() == str(saved + 3)
    print(f"restart: workers gone {seconds:.1f} s after, lock free; next Start resumed from step {saved}")

def test_interrupt_during_the_report_card_releases_the_scorers_and_writes_nothing(kernel):
    "■ while the card samples: the cell ends, the scorers are let go (the GPU's memory back), no card file is half-written, and the cell runs again."
    name = "20_colab_quickstart.ipynb"
    folder = setup_notebook(kernel, name, steps=6, save_every=3)
    cells = code_cells(name)
    i = next(i for i, c in enumerate(cells) if "run.start(wait=True)" in c)
    card = next(j for j, c in enumerate(cells) if "report_card(" in c)
    for c in cells[i:card]: kernel.run(c)                                                 # train, then the cells up to the card (the grid)
    msg = kernel.submit(cells[card])
    time.sleep(2.0)                                                                       # sampling the card's pictures
    t0 = time.time(); kernel.km.interrupt_kernel()
    reply, out = kernel.wait(msg, timeout=120)
    seconds = time.time() - t0
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", out[-2000:]
    assert seconds < 10 and not (folder / "report_card.json").exists() and not list(folder.glob("*.tmp*")), seconds
    assert kernel.run("print(scorers.dino, scorers.clip)").split() == ["None", "None"]       # release_scorers ran (its finally)
    kernel.run(cells[card])
    assert json.loads((folder / "report_card.json").read_text())["rows"]
    print(f"■ during the report card: cell ended in {seconds:.1f} s; scorers released; the card made on the next run")
