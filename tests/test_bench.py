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
