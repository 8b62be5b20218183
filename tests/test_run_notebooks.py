"tools/run_notebooks.py saves notebooks with outputs that do not change from run to run unless a result changed."
import importlib.util, json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
rn = importlib.util.module_from_spec(spec); spec.loader.exec_module(rn)

def executed(tmp, seconds, addr, model_id):
    "A notebook as execnb leaves it after one run."
    return {"metadata": {"widgets": {"state": {model_id: {}}}}, "nbformat": 4, "nbformat_minor": 5, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# t"]},
        {"cell_type": "code", "metadata": {"execution": {"iopub.execute_input": "2026-11-29T21:00:00"}}, "execution_count": 17, "source": ["x"],
         "outputs": [
            {"name": "stdout", "output_type": "stream", "text": [f"trained in {seconds} s ({seconds}s/it); wrote {tmp}/demo/grid.png\n",
                                                               f"<Run at {addr}>\n", f"{ROOT}/nbs/03_tiny.ipynb\n", "loss 0.412 after 80 steps\n"]},
            {"name": "stderr", "output_type": "stream", "text": ["100%|##| 3/3 [00:01<00:00]\n"]},
            {"output_type": "display_data", "metadata": {}, "data": {"application/vnd.jupyter.widget-view+json": {"model_id": model_id}, "text/plain": ["VBox()"]}},
            {"output_type": "execute_result", "execution_count": 17, "metadata": {}, "data": {"image/png": "iVBORw0KGgo=", "text/plain": ["<PIL.Image at 0x1>"]}}]}]}

def test_two_runs_save_the_same_file():
    a = rn.normalise(executed("/tmp/tmpa1b2c3", "12.3", "0x7f00aa", "m1"))
    b = rn.normalise(executed("/tmp/tmpzz9", "9.87", "0x7f11bb", "m2"))
    assert json.dumps(a) == json.dumps(b)

def test_what_is_kept_and_what_is_replaced():
    nb = rn.normalise(executed("/tmp/tmpa1b2c3", "12.3", "0x7f00aa", "m1"))
    cell = nb["cells"][1]
    text = "".join(cell["outputs"][0]["text"])
    assert text == "trained in <t> s (<t>s/it); wrote <tmp>/demo/grid.png\n<Run at 0x…>\n./nbs/03_tiny.ipynb\nloss 0.412 after 80 steps\n"
    assert [o["output_type"] for o in cell["outputs"]] == ["stream", "display_data", "execute_result"]     # stderr (progress, warnings) dropped
    assert "application/vnd.jupyter.widget-view+json" not in cell["outputs"][1]["data"] and cell["outputs"][2]["data"]["image/png"] == "iVBORw0KGgo="
    assert cell["execution_count"] == 1 and cell["outputs"][2]["execution_count"] == 1 and cell["metadata"] == {} and "widgets" not in nb["metadata"]
