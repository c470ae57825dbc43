"""Run records (shared/records.py): the committed text of every run, and `repro run --restore-from` reusing it."""
import hashlib
import json
import warnings

from fixtures_data import write_cifar10
from shared.cli import main
from shared.records import RUN_FILES, earlier_twins, read_records, record_files, restore_run, write_records


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
    assert restore_run(file, "other-config", out) is None and not out.exists()
    assert restore_run(tmp_path / "absent.jsonl.gz", "h1", out) is None
    meta = restore_run(file, "h1", out)
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

    # the same config on other data files (the data folder was updated since): trained, not restored
    write_cifar10(tmp_path / "data2", per_class_per_batch=5, test_per_class=20)
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data2"))
    retrained = tmp_path / "data2_run" / "relu" / "seed0"
    assert main(args[:-1] + [str(retrained), "--restore-from", str(records)]) == 0
    assert (retrained / "checkpoint.pt").is_file()
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))

    # another variant, even written into a `relu` directory, is looked up by its own config hash: trained
    other = tmp_path / "other" / "relu" / "seed0"
    mish = ["run", "mish", "--variant", "mish", "--profile", "smoke", "--seed", "0", "--out", str(other)]
    assert main(mish + ["--restore-from", str(records)]) == 0
    assert (other / "checkpoint.pt").is_file()
    assert json.loads((other / "meta.json").read_text())["config"]["model"]["kwargs"]["act"] == "mish"


def _recorded(results, paper, profile, variant, seed, config_hash, data_files=None):
    """A records file ``results/<paper>/<profile>/run_records.jsonl.gz`` holding one fake run."""
    path = results / paper / profile / "runs" / variant / f"seed{seed}"
    path.mkdir(parents=True)
    meta = {"paper": paper, "profile": profile, "variant": variant, "seed": seed, "config_hash": config_hash,
            "data": {"files": data_files or {}}}
    (path / "meta.json").write_text(json.dumps(meta))
    (path / "final.json").write_text(json.dumps({"metrics": {"test_accuracy": 0.5}}))
    write_records([path], results / paper / profile / "run_records.jsonl.gz")
    return results / paper / profile / "run_records.jsonl.gz"


def test_restore_finds_the_config_in_another_papers_records_and_says_so(tmp_path):
    results = tmp_path / "results"
    own = _recorded(results, "diffgrad", "cpu", "adam.lr0.003", 0, "h-own")
    other = _recorded(results, "madgrad", "cpu", "sgd.lr0.1", 1, "h-sgd")
    assert record_files([own, results, tmp_path / "absent"]) == [own, other]  # own first, each file once

    target = {"paper": "diffgrad", "variant": "sgdm.lr0.1", "profile": "cpu", "seed": 1}
    out = tmp_path / "runs" / "sgdm.lr0.1" / "seed1"
    meta = restore_run([own, results], "h-sgd", out, target=target)
    # the same config under another paper's name: the run directory is the target's, and names its source
    assert {k: meta[k] for k in target} == target and json.loads((out / "meta.json").read_text()) == meta
    assert meta["restored_from"] == {"paper": "madgrad", "profile": "cpu", "variant": "sgd.lr0.1", "seed": 1,
                                     "records": str(other)}
    assert json.loads((out / "final.json").read_text()) == {"metrics": {"test_accuracy": 0.5}}
    # the profile's own record of its own run is written back byte for byte, with no restored_from
    mine = tmp_path / "runs" / "adam" / "seed0"
    own_target = {"paper": "diffgrad", "variant": "adam.lr0.003", "profile": "cpu", "seed": 0}
    assert "restored_from" not in restore_run([own, results], "h-own", mine, target=own_target)
    assert (mine / "meta.json").read_text() == (results / "diffgrad/cpu/runs/adam.lr0.003/seed0/meta.json").read_text()


def test_restore_refuses_a_record_whose_data_files_changed(tmp_path):
    data = tmp_path / "data"
    (data / "set").mkdir(parents=True)
    (data / "set" / "train.bin").write_bytes(b"version 1")
    recorded = {"set/train.bin": hashlib.sha256(b"version 1").hexdigest()}
    records = _recorded(tmp_path / "results", "p", "cpu", "a", 0, "h", data_files=recorded)

    assert restore_run(records, "h", tmp_path / "ok", data_root=data) is not None  # unchanged: restored
    (data / "set" / "train.bin").write_bytes(b"version 2, the updated copy")
    assert restore_run(records, "h", tmp_path / "new", data_root=data) is None  # changed: trained again
    assert not (tmp_path / "new").exists()
    assert restore_run(records, "h", tmp_path / "gone", data_root=tmp_path / "elsewhere") is None  # absent


def test_plan_says_per_run_finished_restorable_or_to_train(tmp_path, monkeypatch, capsys):
    from shared.config import config_hash, resolve_paper_run

    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    results, runs = tmp_path / "results", tmp_path / "runs"
    # mish smoke relu seed 0 was trained under another paper's name; mish seed 0 is finished here; swish is new
    _recorded(results, "other", "cpu", "baseline", 0, config_hash(resolve_paper_run("mish", "relu", "smoke", 0)))
    (runs / "mish" / "smoke" / "mish" / "seed0").mkdir(parents=True)
    (runs / "mish" / "smoke" / "mish" / "seed0" / "final.json").write_text("{}")
    capsys.readouterr()
    assert main(["plan", "mish", "--profile", "smoke", "--results-dir", str(results), "--runs-dir", str(runs)]) == 0
    lines = {line.split()[0]: line.split(None, 3)[3] for line in capsys.readouterr().out.splitlines()[:-1]}
    assert lines == {"relu": "restore  other/cpu baseline seed 0", "swish": "train", "mish": "finished"}


def test_plan_names_runs_that_share_a_config(tmp_path, monkeypatch, capsys):
    """small_scale_proxies' `*_high_lr` variants resolve to the config of its lr 3e-2 grid points: plan says that
    the workflow copies them from those runs instead of training them a second time."""
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    capsys.readouterr()
    assert main(["plan", "small_scale_proxies", "--profile", "tiny", "--results-dir", str(tmp_path / "results"),
                 "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out.splitlines()
    twins = [line for line in out if "same config" in line]
    assert len(twins) == 6 and all(line.split()[3] == "copy" for line in twins)
    assert twins[0].split()[0] == "baseline_high_lr" and twins[0].split(None, 3)[3] == (
        "copy     baseline.lr0.03 seed 0  (the same config)")
    assert out[-1].endswith("6 copy, 0 restore, 33 train")


def test_earlier_twins_names_the_first_run_of_each_repeated_config():
    runs = [("a", 0, "h1"), ("a", 1, "h2"), ("b", 0, "h1"), ("c", 0, "h1"), ("c", "1", "h2"), ("d", 0, "h3")]
    assert earlier_twins(runs) == {("b", 0): ("a", 0), ("c", 0): ("a", 0), ("c", 1): ("a", 1)}


def test_a_run_directory_is_a_restore_source(tmp_path):
    """A finished run directory restores a run of its config (the workflow's twin runs) under the target's names."""
    source = tmp_path / "runs" / "p" / "tiny" / "baseline.lr0.03" / "seed0"
    source.mkdir(parents=True)
    (source / "meta.json").write_text(json.dumps({"paper": "p", "profile": "tiny", "config_hash": "h1"}))
    (source / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    (source / "final.json").write_text('{"metrics": {"val_loss": 1.5}}')
    twin = tmp_path / "runs" / "p" / "tiny" / "baseline_high_lr" / "seed0"
    target = {"paper": "p", "profile": "tiny", "variant": "baseline_high_lr", "seed": 0}
    assert restore_run([source], "h2", twin, target=target) is None and not twin.exists()  # another config
    meta = restore_run([source, tmp_path / "results"], "h1", twin, target=target)
    assert meta["variant"] == "baseline_high_lr" and meta["restored_from"]["variant"] == "baseline.lr0.03"
    assert meta["restored_from"]["records"] == str(source)
    for name in ("metrics.jsonl", "final.json"):
        assert (twin / name).read_text() == (source / name).read_text()
    unfinished = tmp_path / "runs" / "p" / "tiny" / "other" / "seed0"
    unfinished.mkdir(parents=True)
    (unfinished / "meta.json").write_text(json.dumps({"config_hash": "h3"}))
    assert restore_run([unfinished], "h3", tmp_path / "x", target=target) is None  # no final.json: not a source


def test_plan_restore_writes_what_the_workflow_would(tmp_path, monkeypatch, capsys):
    """`repro plan --restore` writes each restorable run as `repro run --restore-from` (the workflow's run job)
    would, byte for byte; a twin is copied from its first run once that is written; a twin whose first run has no
    record is left to train; a second plan finds them finished."""
    from shared.config import config_hash, resolve_paper_run

    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    results, runs = tmp_path / "results", tmp_path / "runs"
    first = resolve_paper_run("small_scale_proxies", "baseline.lr0.03", "tiny", 0)
    _recorded(results, "other", "cpu", "baseline", 0, config_hash(first))
    plan = ["plan", "small_scale_proxies", "--profile", "tiny", "--results-dir", str(results), "--runs-dir", str(runs)]
    capsys.readouterr()
    assert main(plan + ["--restore"]) == 0
    out = capsys.readouterr().out.splitlines()
    said = {tuple(line.split()[:3:2]): line.split(None, 3)[3] for line in out[:-1]}
    assert said[("baseline.lr0.03", "0")] == "restore  other/cpu baseline seed 0  -> written"
    assert said[("baseline_high_lr", "0")] == "copy     baseline.lr0.03 seed 0  (the same config)  -> written"
    assert said[("baseline_high_lr", "1")] == "train    (a copy of baseline.lr0.03 seed 1, which has no record either)"
    assert out[-1].endswith("0 finished, 1 copy, 1 restore, 37 train; 2 written under " + str(runs))
    root = runs / "small_scale_proxies" / "tiny"
    twin = json.loads((root / "baseline_high_lr" / "seed0" / "meta.json").read_text())
    assert twin["variant"] == "baseline_high_lr" and twin["restored_from"]["variant"] == "baseline.lr0.03"
    assert twin["restored_from"]["records"] == str(root / "baseline.lr0.03" / "seed0")

    # the workflow's own restore of the same run writes the same files
    again = tmp_path / "again"
    assert main(["run", "small_scale_proxies", "--variant", "baseline.lr0.03", "--profile", "tiny", "--seed", "0",
                 "--out", str(again), "--restore-from", str(results / "other" / "cpu" / "run_records.jsonl.gz"),
                 str(results)]) == 0
    for name in ("meta.json", "final.json"):
        assert (again / name).read_text() == (root / "baseline.lr0.03" / "seed0" / name).read_text()
    capsys.readouterr()
    assert main(plan) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("2 finished, 5 copy, 0 restore, 32 train")
