"""Run records (shared/records.py): the committed text of every run, and `repro run --restore-from` reusing it."""
import json
import warnings

from fixtures_data import write_cifar10
from shared.cli import main
from shared.records import RUN_FILES, read_records, restore_run, write_records


def _fake_run(root, variant, seed, config_hash, loss):
    path = root / variant / f"seed{seed}"
    path.mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps({"config_hash": config_hash, "device": "cpu: test"}))
    (path / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 1, "loss": loss}) + "\n")
    (path / "final.json").write_text(json.dumps({"metrics": {"test_loss": loss}}))
    (path / "checkpoint.pt").write_bytes(b"weights are never recorded")
    return path


def test_records_round_trip_byte_stable_and_restore_only_the_same_config(tmp_path):
    runs = [_fake_run(tmp_path / "runs", "b.lr0.1", 1, "h1", 0.5), _fake_run(tmp_path / "runs", "a", 0, "h0", 0.25)]
    file = tmp_path / "run_records.jsonl.gz"
    assert write_records(runs, file) == 2
    first = file.read_bytes()
    assert write_records(runs, file) == 2 and file.read_bytes() == first  # no timestamp in the gzip header
    records = read_records(file)
    assert [(r["variant"], r["seed"], r["config_hash"]) for r in records] == [("a", 0, "h0"), ("b.lr0.1", 1, "h1")]
    assert set(records[0]["files"]) == {"meta.json", "metrics.jsonl", "final.json"}  # no derived.json, no weights

    out = tmp_path / "restored" / "b.lr0.1" / "seed1"
    assert restore_run(file, "b.lr0.1", 1, "other-config", out) is None and not out.exists()
    assert restore_run(file, "b.lr0.1", 2, "h1", out) is None  # no such seed
    assert restore_run(tmp_path / "absent.jsonl.gz", "b.lr0.1", 1, "h1", out) is None
    meta = restore_run(file, "b.lr0.1", 1, "h1", out)
    assert meta == {"config_hash": "h1", "device": "cpu: test"}
    for name in ("meta.json", "metrics.jsonl", "final.json"):
        assert (out / name).read_text() == (runs[0] / name).read_text()
    assert not (out / "checkpoint.pt").exists() and "final.json" == RUN_FILES[-1]


def test_cli_run_restores_a_recorded_run_instead_of_training(tmp_path, monkeypatch, capsys):
    write_cifar10(tmp_path / "data", per_class_per_batch=4, test_per_class=20)
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    warnings.simplefilter("ignore")
    run_dir = tmp_path / "runs" / "mish" / "smoke" / "relu" / "seed0"
    args = ["run", "mish", "--variant", "relu", "--profile", "smoke", "--seed", "0", "--out", str(run_dir)]
    assert main(args) == 0 and (run_dir / "checkpoint.pt").is_file()
    trained = {name: (run_dir / name).read_text() for name in ("meta.json", "metrics.jsonl", "final.json")}
    records = tmp_path / "run_records.jsonl.gz"
    write_records([run_dir], records)
    capsys.readouterr()

    restored = tmp_path / "again" / "relu" / "seed0"
    assert main(args[:-1] + [str(restored), "--restore-from", str(records)]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(trained["final.json"])["metrics"]
    assert {name: (restored / name).read_text() for name in trained} == trained
    assert not (restored / "checkpoint.pt").exists()  # nothing was trained

    # another variant, even written into a `relu` directory, is looked up by its own name: trained, not restored
    other = tmp_path / "other" / "relu" / "seed0"
    mish = ["run", "mish", "--variant", "mish", "--profile", "smoke", "--seed", "0", "--out", str(other)]
    assert main(mish + ["--restore-from", str(records)]) == 0
    assert (other / "checkpoint.pt").is_file()
    assert json.loads((other / "meta.json").read_text())["config"]["model"]["kwargs"]["act"] == "mish"
