"Several GPUs (Kaggle T4x2): the launch decisions that a CPU machine can check. The two-process run itself is tests/test_train.py's test_two_processes_match_one_with_accumulation (gloo on the CPU, the same code path as NCCL's)."
import sys
import pytest
import zimage_nb.launch as L
from zimage_nb.config import preset
from zimage_nb.core import ZImageError

def test_more_processes_than_gpus_is_refused_before_anything_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(L, "gpu_count", lambda: 1)
    monkeypatch.setattr(L, "prepare_shared", lambda *a, **k: pytest.fail("nothing may be prepared for a launch that cannot start"))
    cfg = preset("tiny", job__output_dir=str(tmp_path), datasets__0__path=str(tmp_path))
    with pytest.raises(ZImageError, match="num_processes is 2 but this machine has 1 GPU"): L.launch_training(cfg, num_processes=2)

def test_the_workers_are_a_fresh_program_started_by_torchrun():
    "Not a fork of the notebook: bitsandbytes imported, or CUDA initialised, in the notebook does not reach them (accelerate's notebook_launcher refuses both)."
    cmd = L.launch_command("/run/launch.json", 2)
    assert cmd[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert cmd[5:7] == ["--no-python", sys.executable] and "worker(sys.argv[1])" in cmd[8] and cmd[-1] == "/run/launch.json"
    assert L.GROUP_TIMEOUT_S >= 1800      # NCCL's 10-minute default is shorter than a rank loading 12 GB while the other waits

def test_a_process_started_by_the_launcher_dies_with_its_parent(tmp_path):
    """What a kernel restart does to torchrun: its parent (the kernel) is killed. A child armed with die_with_parent, silent so
    that no broken pipe ends it first (a worker loading a model or sampling writes nothing for minutes), is gone within 2 s."""
    import os, signal, subprocess, time
    psutil = pytest.importorskip("psutil")
    pidfile = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", f"""
import functools, os, subprocess, sys, time
from zimage_nb.launch import die_with_parent, _prctl
c = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True, preexec_fn=functools.partial(die_with_parent, os.getpid(), _prctl()))
open({str(pidfile)!r}, "w").write(str(c.pid)); time.sleep(600)"""])
    while not pidfile.exists() or not pidfile.read_text(): time.sleep(0.1)
    child = psutil.Process(int(pidfile.read_text()))
    os.kill(parent.pid, signal.SIGKILL); parent.wait()
    try: child.wait(timeout=2)
    except psutil.TimeoutExpired: child.kill(); pytest.fail("the child outlived its parent")
