"""A Colab session's run folder on Google Drive, with Drive's Trash counted.

Each file deleted or replaced through Colab's Drive mount goes to the Trash (minimaxir/gpt-2-simple issue 155,
huggingface/transformers issue 14922, voicepaw/so-vits-svc-fork issue 474), and the Trash counts against the free 15 GB
until it is emptied or 30 days pass (Google Drive Help, answer 14933051: "Items in your bin take up storage"). A file
rewritten in place stays the same Drive file with a new version, and earlier versions count only when marked
keep-forever (Drive API guide, "Manage file revisions"; a file's quotaBytesUsed). The stand-in is a folder whose
deletions and replacements (os.remove / os.unlink, shutil.rmtree, os.rename / os.replace over an existing file: every
way this package removes a file) are counted through Python's audit hooks while a tiny run trains into it."""
import os, sys
import pytest
import zimage_nb.train as T
from zimage_nb.tiny import write_demo_dataset
import zimage_nb.checkpoints as C
from zimage_nb.config import preset
from zimage_nb.planner import transformer_shape, optimizer_bytes
from zimage_nb.lora import MODULE_SETS

class DriveTrash:
    "Bytes and files that deletions and replacements under `root` would send to Drive's Trash."
    active = []                                            # audit hooks cannot be removed: one hook, counters switched on and off
    def __init__(self, root):
        self.root, self.bytes, self.files = os.path.realpath(root), 0, []
        if not DriveTrash.active: sys.addaudithook(DriveTrash._hook)
    def __enter__(self): DriveTrash.active.append(self); return self
    def __exit__(self, *a): DriveTrash.active.remove(self)
    @staticmethod
    def _hook(event, args):
        if not DriveTrash.active or event not in ("os.remove", "os.rename"): return
        path, fd = (args[0], args[1]) if event == "os.remove" else (args[1], args[3])   # a rename sends the file it replaces
        if not isinstance(path, (str, bytes, os.PathLike)): return
        full = os.path.join(os.readlink(f"/proc/self/fd/{fd}"), path) if fd is not None and not os.path.isabs(path) else os.path.realpath(path)
        try: size = os.stat(full).st_size if os.path.isfile(full) else None
        except OSError: size = None
        for t in DriveTrash.active:
            if size is not None and str(full).startswith(t.root + os.sep): t.bytes += size; t.files.append(os.path.relpath(full, t.root))

def session(tmp_path, tiny_data, local:bool)->tuple:
    "A T4 session's checkpoints in small: 24 (every 10 minutes for 4 hours), save.keep = 4; the run folder on the Drive stand-in."
    drive = tmp_path / ("drive-local" if local else "drive"); drive.mkdir()
    cfg = preset("tiny", job__output_dir=str(drive), job__name="lora", job__trigger_word="zxq", datasets__0__path=str(tiny_data),
                 training__steps=49, save__every=2, save__every_minutes=0, save__keep=4, sample__every=0,
                 save__local_dir=str(tmp_path / "machine") if local else "")
    with DriveTrash(drive) as trash: res = T.train(cfg, work=drive / "lora" / "work", progress=False)
    return trash, C.checkpoint_bytes(res["run"]), res["run"]

@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory): return write_demo_dataset(tmp_path_factory.mktemp("photos") / "photos")

def test_checkpoints_on_the_machine_leave_drive_no_trash(tmp_path, tiny_data):
    old, ck, _ = session(tmp_path, tiny_data, local=False)
    pruned = [f for f in old.files if f.startswith("lora/checkpoints/step_")]
    assert len({f.split("/")[2] for f in pruned}) == 20 and old.bytes >= 0.999 * 20 * ck   # 24 written, 4 kept: 20 in the Trash (a checkpoint's size varies by a few bytes)
    new, ck2, run = session(tmp_path, tiny_data, local=True)
    assert not [f for f in new.files if "checkpoints" in f] and new.bytes < ck2 / 4, new.files   # what is left: small files rewritten by rename
    assert [(p.name, C.checkpoint_step(p)) for p in C.list_checkpoints(run.out / "checkpoints")] == [("latest-a", 46), ("latest-b", 48)]
    assert [p.name for p in C.list_checkpoints(tmp_path / "machine" / "lora")] == [f"step_{s:07d}" for s in (42, 44, 46, 48)]
    print(f"\ntiny session, 24 checkpoints of {ck / 2**20:.2f} MiB: Trash {old.bytes / 2**20:.2f} MiB in the run folder; "
          f"with save.local_dir {new.bytes / 2**10:.1f} KiB ({len(new.files)} files: {sorted(set(os.path.basename(f) for f in new.files))})")

def test_a_real_size_session_fits_in_15_GB_only_with_checkpoints_on_the_machine():
    "The same count at Z-Image's real size, for three sessions within the Trash's 30 days (a run the planner splits, or three runs): a checkpoint is the LoRA in fp32, the optimizer state and about 1 MiB more (`checkpoint_bytes`)."
    cfg = preset("turbo-adapter-v2")
    s = transformer_shape()
    sizes = [cfg.target.rank * (i + o) for i, o in s["targets"][cfg.target.modules] for _ in (0,)]
    assert cfg.target.modules in MODULE_SETS
    ck = sum(sizes) * 4 + optimizer_bytes(sizes, cfg.training.optimizer) + 2**20
    trash_old = 20 * ck
    live_old, live_new = cfg.save.keep * ck, 2 * ck                    # what stays in the run folder: save.keep checkpoints, or the two slots
    nf4 = 2.9 * 2**30                                                  # the kept NF4 transformer (model.quantized_dir; 04_models)
    print(f"\nreal size ({cfg.target.modules}, rank {cfg.target.rank}, {cfg.training.optimizer}): a checkpoint {ck / 2**30:.2f} GiB; "
          f"a 4-hour session's Trash {trash_old / 2**30:.1f} GiB before, 0 with save.local_dir; Drive after three sessions "
          f"(the Trash keeps 30 days), with the NF4 copy: {(3 * trash_old + live_old + nf4) / 2**30:.1f} GiB before, {(live_new + nf4) / 2**30:.1f} GiB now")
    assert 3 * trash_old + live_old + nf4 > 15e9 > live_new + nf4
