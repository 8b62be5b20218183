"Host RAM: streaming a single-file checkpoint into NF4 never holds the whole file; loading it whole does (fresh processes)."
import json, subprocess, sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "load_peak_ram.py"

def test_streamed_nf4_load_peaks_below_the_file_size_and_far_below_a_whole_file_load(tmp_path):
    out = tmp_path / "r.json"
    subprocess.run([sys.executable, str(BENCH), "--scale", "small", "--dir", str(tmp_path), "--json", str(out)], check=True, capture_output=True)
    r = json.loads(out.read_text()); runs = {x["mode"]: x for x in r["runs"]}
    file_mb, stream, naive = r["file_bytes"] / 2**20, runs["stream"]["peak_extra"] / 2**20, runs["naive"]["peak_extra"] / 2**20
    print(f"file {file_mb:.0f} MiB, streamed peak +{stream:.0f} MiB, whole-file peak +{naive:.0f} MiB")
    assert naive > file_mb            # the measurement sees a whole-file load (measured: 1.96x the file)
    assert stream < 0.85 * file_mb    # measured 0.66x: the quantized model plus one tensor in flight
    assert stream < 0.5 * naive
