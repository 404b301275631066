import json
import subprocess
import sys

from tests.test_cli import ROOT


def test_quick_benchmarks_run_and_write_json(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    for name in ("cnn4", "vgg16", "resnet50", "multi-task"):
        entry = report["training"][name]
        assert entry["naive_fp32"]["samples_per_s"] > 0 and entry["default"]["tflops"] > 0
    assert report["ewc"]["fisher_per_sample_s_per_1024"] > 0
    assert report["features"]["extraction"]["files_per_s"] > 0
    assert report["packing"]["2_trials_samples_per_s"] > 0
    assert "attacker training" in result.stdout
