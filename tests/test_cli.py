"""The ``repro`` console script: list, show, run (paper and custom config), clear errors with exit codes."""
import json
import warnings

import yaml

from fixtures_data import write_cifar10
from shared.cli import main


def test_cli_list_names_papers_variants_profiles(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mish:" in out and "variants: relu, swish, mish" in out and "tiny (seeds [0, 1, 2])" in out


def test_cli_show_resolves_variant(capsys):
    assert main(["show", "mish", "--variant", "mish", "--profile", "smoke", "--seed", "5"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["kwargs"]["act"] == "mish" and cfg["seed"] == 5 and cfg["train"]["steps"] == 3


def test_cli_unknown_variant_is_a_config_error(capsys):
    assert main(["show", "mish", "--variant", "gelu", "--profile", "tiny"]) == 2
    assert "unknown variant 'gelu'; variants: mish, relu, swish" in capsys.readouterr().err


def test_cli_missing_data_names_file_and_env(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "empty"))
    cfg = {"data": {"dataset": "cifar10", "download": False}, "train": {"steps": 1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out")]) == 3
    err = capsys.readouterr().err
    assert "cifar-10-batches-py" in err and "REPRO_DATA_DIR" in err


def test_cli_run_custom_config(tmp_path, monkeypatch, capsys):
    write_cifar10(tmp_path / "data", per_class_per_batch=2)
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    warnings.simplefilter("ignore")
    cfg = {"data": {"dataset": "cifar10", "download": False}, "model": {"name": "mlp", "kwargs": {"hidden": [8]}},
           "train": {"steps": 2, "batch_size": 8}, "device": "cpu"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out"), "--seed", "2"]) == 0
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["seed"] == 2 and meta["config_file"].endswith("c.yaml")
    assert "test_accuracy" in json.loads(capsys.readouterr().out)


def test_cli_extension_table_names_every_command_its_module_adds():
    import argparse
    import importlib

    from shared.cli import EXTENSIONS

    for module, commands in EXTENSIONS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).add_subcommands(sub)
        assert tuple(sub.choices) == commands, module


def test_cli_run_and_aggregate_load_only_what_they_need():
    """A workflow job starts a fresh `repro` per run: `run` (and the modules a run uses) must not import pandas,
    matplotlib, scipy or torchvision (seconds per job), `aggregate` not torch."""
    import subprocess
    import sys

    probe = ("import sys; from shared.cli import build_parser; build_parser({!r}); {}; "
             "print(*(m in sys.modules for m in ('torch', 'pandas', 'matplotlib', 'scipy', 'torchvision')))")
    run_path = ("import shared.train, shared.models, shared.optim; "
                "from shared.data.cifar import official_checksums; official_checksums('cifar10')")
    for command, extra, expected in (("run", "pass", "False False False False False"),
                                     ("run", run_path, "True False False False False"),
                                     ("aggregate", "pass", "False True True True False")):
        probe_cmd = probe.format(command, extra)
        out = subprocess.run([sys.executable, "-c", probe_cmd], capture_output=True, text=True, check=True)
        assert out.stdout.split() == expected.split(), (command, out.stdout, out.stderr)
