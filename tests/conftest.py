import pytest
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
