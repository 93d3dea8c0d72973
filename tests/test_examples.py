"""Run every example script end to end (small sizes) and check its figures."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CASES = {
    "old_faithful.py": ["old_faithful_density.png", "old_faithful_ellipses.png",
                        "old_faithful_bic.png", "old_faithful_loglik.png"],
    "em_iterations.py": ["em_iterations.png"],
    "large_blobs.py": [],
    "anomaly_detection.py": ["anomaly_detection.png"],
    "streaming_from_disk.py": ["learning_curve.png"],
    "dask_cluster.py": [],
    "unknown_k.py": ["unknown_k_weights.png"],
    "missing_values.py": ["missing_values.png"],
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs(script, tmp_path):
    env = dict(os.environ, FASTEM_EXAMPLE_SMALL="1", MPLBACKEND="Agg")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / script), str(out)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, (
        f"{script} exited with {proc.returncode}\nstdout:\n{proc.stdout}\n"
        f"stderr:\n{proc.stderr}")
    assert proc.stdout.strip(), f"{script} printed nothing"
    for name in CASES[script]:
        png = out / name
        assert png.is_file(), f"{script} did not write {name}; got {os.listdir(out)}"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_example_default_output_dir_is_temporary(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / "anomaly_detection.py")],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(s for s in proc.stdout.splitlines() if s.startswith("Figure written to"))
    out = Path(line[len("Figure written to "):].rstrip(":"))
    try:
        assert (out / "anomaly_detection.png").is_file()
        assert not (tmp_path / "examples_output").exists()
    finally:
        for f in out.iterdir():
            f.unlink()
        out.rmdir()
