import os, pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):   # `make test` runs two workers (pytest-xdist) on CI's 2 cores: one thread each, and the same for what they start
    torch.set_num_threads(1); os.environ["OMP_NUM_THREADS"] = "1"
from zimage_nb.tiny import tiny_pipeline

@pytest.fixture(scope="session")
def tiny():
    "The tiny pipeline (seed 0), shared: tests must not change it."
    return tiny_pipeline()

@pytest.fixture(scope="session")
def tiny_folder(tiny, tmp_path_factory):
    "The tiny pipeline saved as a diffusers folder."
    d = tmp_path_factory.mktemp("tiny") / "model"
    tiny.save_pretrained(d)
    return d
