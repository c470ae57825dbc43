"""``repro bench`` runs both loops on the same task and writes its table (speed itself is not asserted here)."""
import csv
import warnings

import pytest

from fixtures_data import write_cifar10
from shared.bench import benchmark, write_results


@pytest.mark.slow
def test_bench_writes_side_by_side_table(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "data", per_class_per_batch=4)
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    warnings.simplefilter("ignore")
    rows = benchmark(["resnet20-cifar10"], ["fp32"], steps=20, repeats=1)
    assert rows[0]["shared_examples_per_s"] > 0 and rows[0]["bare_examples_per_s"] > 0
    assert rows[0]["ratio_median"] == pytest.approx(rows[0]["shared_examples_per_s"] / rows[0]["bare_examples_per_s"],
                                                    rel=1e-2)
    write_results(rows, tmp_path / "out", "cpu")
    table = list(csv.DictReader(open(tmp_path / "out" / "loop_throughput.csv")))
    assert table[0]["task"] == "resnet20-cifar10"
    assert "| resnet20-cifar10 | fp32 |" in (tmp_path / "out" / "loop_throughput.md").read_text()


@pytest.mark.slow
def test_airbench_cpu_benchmark_shared_and_bare_agree(tmp_path, monkeypatch):
    """benchmarks/airbench_cpu.py at toy scale: one row per arm, and the shared trainer and the bare script, given the
    same seed and recipe, end at the same test accuracy (to within 2 of the 100 test images)."""
    import importlib.util
    from pathlib import Path

    write_cifar10(tmp_path / "data", per_class_per_batch=10)
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    warnings.simplefilter("ignore")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "airbench_cpu.py"
    spec = importlib.util.spec_from_file_location("airbench_cpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    assert module.main(["--seeds", "0", "--precision", "fp32", "--threads", "1", "--epochs", "2", "--width", "0.125",
                        "--batch-size", "100", "--test-subset", "100", "--out-dir", str(out),
                        "--runs-dir", str(tmp_path / "runs")]) == 0
    rows = {r["arm"]: r for r in csv.DictReader(open(out / "airbench94_cpu.csv"))}
    assert set(rows) == {"shared", "bare"} and all(int(r["steps"]) == 10 for r in rows.values())
    for metric in ("test_accuracy", "test_tta_accuracy"):
        assert abs(float(rows["shared"][metric]) - float(rows["bare"][metric])) <= 0.02, metric
    assert "Fewer than 3 runs per arm" in (out / "airbench94_cpu.md").read_text()
    # --append adds an arm to the table without rerunning (or dropping) the others
    assert module.main(["--seeds", "0", "--precision", "fp32", "--threads", "1", "--arms", "resnet20",
                        "--resnet20-epochs", "1", "--test-subset", "100", "--out-dir", str(out), "--append"]) == 0
    rows = list(csv.DictReader(open(out / "airbench94_cpu.csv")))
    assert sorted(r["arm"] for r in rows) == ["bare", "resnet20", "shared"]
    assert float(next(r for r in rows if r["arm"] == "resnet20")["epochs"]) == 1.0
    table = (out / "airbench94_cpu.md").read_text()
    assert "| resnet20, 1 epochs | 1 |" in table and "ResNet-20 (1 epochs, no TTA) vs the bare recipe" in table
    assert all(r["cpu"] for r in rows) and "CPU of the rows: shared " in table  # each row names its CPU
    # another ResNet-20 budget is added beside the first, not in its place
    assert module.main(["--seeds", "0", "--precision", "fp32", "--threads", "1", "--arms", "resnet20",
                        "--resnet20-epochs", "0.5", "--test-subset", "100", "--out-dir", str(out), "--append"]) == 0
    assert sorted(float(r["epochs"]) for r in csv.DictReader(open(out / "airbench94_cpu.csv"))
                  if r["arm"] == "resnet20") == [0.5, 1.0]
    assert "| resnet20, 0.5 epochs | 1 |" in (out / "airbench94_cpu.md").read_text()
