"""shared.data: readers, checksums/variants, errors, splits, batchers, tokenizers and caches.

Fast tests run on tiny fake datasets written in the real formats (tests/fixtures_data.py); tests marked ``data``
run on the real copies under $REPRO_DATA_DIR and are skipped when it is unset.
"""
from __future__ import annotations

import os
import pickle
import urllib.error
import warnings
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

import shared.data.cifar as cifar
import shared.data.tokens as tokens
import shared.data.wikitext as wikitext
from shared.data import (ChecksumError, ClassificationBatches, DataMissingError, LMBatches, UnverifiedDataWarning,
                         eval_batches, file_hashes, load_data, resolve_data_dir)
from shared.data.augment import crop_flip
from shared.data.checksums import _HASH_CACHE
from fixtures_data import WIKI_LINES, write_cifar10, write_cifar100, write_sha256sums, write_wikitext2

REAL_DATA = os.environ.get("REPRO_DATA_DIR")
NO_AUG = {"crop_padding": 0, "flip": False}


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Every test gets its own cache dir and no data-root override unless it sets one."""
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)


def load_unverified(**cfg):
    """Fake data matches no known checksum: loading must warn, and the result is marked unverified."""
    with pytest.warns(UnverifiedDataWarning, match="UNVERIFIED"):
        data = load_data(cfg)
    assert data.info["variant"] == "unverified"
    return data


@pytest.fixture
def c10(tmp_path):
    write_cifar10(tmp_path)
    return load_unverified(dataset="cifar10", data_dir=str(tmp_path), download=False)


# --- readers, variants, errors -------------------------------------------------------------------------------

def test_cifar10_reader_shapes_dtypes_labels(tmp_path, c10):
    assert c10.train_x.shape == (100, 3, 32, 32) and c10.train_x.dtype == torch.uint8
    assert c10.train_y.dtype == torch.int64 and c10.train_y[:10].tolist() == list(range(10))
    tx, ty = c10.eval_sets["test"]
    assert tx.shape == (30, 3, 32, 32) and set(c10.eval_sets) == {"test"}
    assert c10.num_classes == 10 and len(c10.mean) == len(c10.std) == 3
    with open(tmp_path / "cifar-10-batches-py/data_batch_1", "rb") as f:
        rows = torch.from_numpy(pickle.load(f, encoding="latin1")["data"])
    # channel-major rows: bytes 0..1023 are the red plane, 1024..2047 the green plane of image 0
    assert torch.equal(c10.train_x[0, 0].flatten(), rows[0, :1024])
    assert torch.equal(c10.train_x[0, 1].flatten(), rows[0, 1024:2048])
    assert torch.equal(c10.train_x[:20].flatten(1), rows)
    assert set(c10.info["files"]) == {f"cifar-10-batches-py/{n}" for n in cifar.SPECS["cifar10"].train} | {
        "cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta"}
    assert c10.info["n_train"] == 100 and c10.info["n_eval"] == {"test": 30}


def test_cifar100_reader_fine_labels(tmp_path):
    write_cifar100(tmp_path)
    data = load_unverified(dataset="cifar100", data_dir=str(tmp_path), download=False)
    assert data.train_x.shape == (200, 3, 32, 32) and data.num_classes == 100
    assert torch.bincount(data.train_y).tolist() == [2] * 100 and data.eval_sets["test"][1].max() == 99


def test_cifar_official_md5_gives_official_variant(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    folder = "cifar-10-batches-py"
    fake_official = {f"{folder}/{n}": ("md5", file_hashes(tmp_path / folder / n)["md5"])
                     for n in os.listdir(tmp_path / folder)}
    monkeypatch.setattr(cifar, "official_checksums", lambda dataset: fake_official)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_data({"data_dir": str(tmp_path), "download": False}).info["variant"] == "cifar10"


def test_cifar_sha256sums_match_gives_recon_variant(tmp_path):
    folder = write_cifar10(tmp_path)
    write_sha256sums(tmp_path, [f"cifar-10-batches-py/{n}" for n in sorted(os.listdir(folder))])
    data = load_data({"data_dir": str(tmp_path), "download": False})
    assert data.info["variant"] == "cifar10-recon"
    assert data.info["files"]["cifar-10-batches-py/test_batch"] == file_hashes(folder / "test_batch")["sha256"]


def test_cifar_sha256sums_mismatch_names_corrupt_file(tmp_path):
    folder = write_cifar10(tmp_path)
    write_sha256sums(tmp_path, [f"cifar-10-batches-py/{n}" for n in sorted(os.listdir(folder))])
    target = folder / "data_batch_3"
    expected = file_hashes(target)["sha256"]
    blob = bytearray(target.read_bytes())
    blob[-100] ^= 0xFF  # same size, one pixel byte flipped
    target.write_bytes(bytes(blob))
    os.utime(target, ns=(1, 1))  # new mtime so the in-process hash cache cannot serve the old digest
    with pytest.raises(ChecksumError, match="data_batch_3") as err:
        load_data({"data_dir": str(tmp_path), "download": False})
    assert err.value.expected == expected and err.value.actual == file_hashes(target)["sha256"] != expected


def test_cifar_missing_file_without_download_names_file_and_env(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py/data_batch_4").unlink()
    with pytest.raises(DataMissingError, match="data_batch_4") as err:
        load_data({"data_dir": str(tmp_path), "download": False})
    assert isinstance(err.value, FileNotFoundError)
    assert "export REPRO_DATA_DIR=" in str(err.value) and "cifar-10-batches-py/test_batch" in str(err.value)


def test_cifar_download_offline_raises_data_missing(tmp_path, monkeypatch):
    def offline(root, dataset):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(cifar, "download_cifar", offline)
    with pytest.raises(DataMissingError, match="data_batch_1") as err:
        load_data({"data_dir": str(tmp_path / "empty"), "download": True})
    assert "no network" in str(err.value) and "REPRO_DATA_DIR" in str(err.value)


def test_wikitext_download_offline_raises_data_missing(tmp_path, monkeypatch):
    def offline(root):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(wikitext, "download_wikitext2", offline)
    with pytest.raises(DataMissingError, match="wiki.train.tokens") as err:
        load_data({"dataset": "wikitext2", "data_dir": str(tmp_path), "download": True})
    assert "REPRO_DATA_DIR" in str(err.value) and wikitext.URL in str(err.value)


def test_resolve_data_dir_env_overrides_config(tmp_path, monkeypatch):
    assert resolve_data_dir(None) == Path("data") and resolve_data_dir("cfg/dir") == Path("cfg/dir")
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    assert resolve_data_dir("cfg/dir") == tmp_path
    write_cifar10(tmp_path)
    assert load_unverified(data_dir="nonexistent", download=False).info["data_dir"] == str(tmp_path.resolve())


def test_file_hashes_cached_within_process(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    first = file_hashes(path)
    monkeypatch.setattr("builtins.open", lambda *a, **k: pytest.fail("hash recomputed"))
    assert file_hashes(path) is first and any(str(path.resolve()) == k[0] for k in _HASH_CACHE)


def test_load_data_unknown_key_raises():
    with pytest.raises(ValueError, match="sbset_per_class"):
        load_data({"sbset_per_class": 3})


# --- splits --------------------------------------------------------------------------------------------------

def test_subset_per_class_stratified_val_disjoint_and_fixed(tmp_path):
    write_cifar10(tmp_path, per_class_per_batch=4)  # 20 per class
    cfg = dict(data_dir=str(tmp_path), download=False, subset_per_class=5, val_per_class=3, test_subset=7)
    a, b = load_unverified(**cfg), load_unverified(**cfg)
    assert torch.bincount(a.train_y).tolist() == [5] * 10
    vx, vy = a.eval_sets["val"]
    assert torch.bincount(vy).tolist() == [3] * 10 and torch.equal(vx, b.eval_sets["val"][0])
    assert len(a.eval_sets["test"][1]) == 7 and a.info["n_eval"] == {"val": 30, "test": 7}
    flat = lambda x: {bytes(img.flatten().tolist()) for img in x}
    assert not flat(a.train_x) & flat(vx)  # fake images are distinct, so disjoint images = disjoint indices
    # val comes from the end of each class, so the training subset does not depend on val_per_class
    no_val = load_unverified(**{**cfg, "val_per_class": 0})
    assert torch.equal(no_val.train_x, a.train_x) and "val" not in no_val.eval_sets


def test_subset_per_class_too_large_raises(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(ValueError, match="subset_per_class"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedDataWarning)
        load_data({"data_dir": str(tmp_path), "download": False, "subset_per_class": 9, "val_per_class": 2})


def test_classes_keeps_and_relabels_in_given_order(tmp_path):
    write_cifar10(tmp_path, per_class_per_batch=4)  # 20 per class
    full = load_unverified(data_dir=str(tmp_path), download=False)
    part = load_unverified(data_dir=str(tmp_path), download=False, classes=[7, 2], subset_per_class=6, test_subset=5)
    assert part.num_classes == 2 and part.info["classes"] == [7, 2]
    assert torch.bincount(part.train_y).tolist() == [6, 6]
    # class 7 -> label 0, class 2 -> label 1, images unchanged and in file order
    for label, original in ((0, 7), (1, 2)):
        assert torch.equal(part.train_x[part.train_y == label], full.train_x[full.train_y == original][:6])
    tx, ty = part.eval_sets["test"]
    fx, fy = full.eval_sets["test"]
    keep = (fy == 7) | (fy == 2)
    assert len(ty) == 5 and torch.equal(tx, fx[keep][:5]) and torch.equal(ty, (fy[keep][:5] == 2).long())


@pytest.mark.parametrize("classes", [[3], [1, 1], [0, 10]])
def test_classes_invalid_raises_naming_the_key(tmp_path, classes):
    write_cifar10(tmp_path)
    with pytest.raises(ValueError, match=r"data\.classes"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedDataWarning)
        load_data({"data_dir": str(tmp_path), "download": False, "classes": classes})


# --- classification batches ----------------------------------------------------------------------------------

def test_classification_batches_pure_function_of_seed_and_step(c10):
    aug = {"crop_padding": 4, "flip": True}
    a, b = ClassificationBatches(c10, 16, 0, "cpu", aug), ClassificationBatches(c10, 16, 0, "cpu", aug)
    b.batch(40)  # a different epoch cached in b must not change what b returns for step 3
    for x, y in zip(a.batch(3), b.batch(3)):
        assert torch.equal(x, y)
    assert not torch.equal(a.batch(3)[0], a.batch(4)[0])
    assert not torch.equal(a.batch(3)[0], ClassificationBatches(c10, 16, 1, "cpu", aug).batch(3)[0])
    x, y = a.batch(3)
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_classification_batches_epoch_is_permutation(c10):
    b = ClassificationBatches(c10, 10, 0, "cpu", NO_AUG)
    assert b.steps_per_epoch == 10
    seen = torch.cat([b.batch(s)[0] for s in range(10)])
    ref = (c10.train_x.float() / 255 - torch.tensor(c10.mean).view(1, 3, 1, 1)) / torch.tensor(c10.std).view(1, 3, 1, 1)
    key = lambda x: sorted(map(tuple, x.flatten(1)[:, :8].tolist()))
    assert key(seen) == key(ref)
    assert not torch.equal(b.batch(0)[1], b.batch(10)[1])  # epoch 1 reshuffles


def test_crop_flip_shapes_and_mirror():
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    none, all_ = torch.zeros(4, dtype=torch.bool), torch.ones(4, dtype=torch.bool)
    centre = torch.full((4, 2), 4)
    assert torch.equal(crop_flip(x, centre, none, 4), x)
    assert torch.equal(crop_flip(x, centre, all_, 4), x.flip(-1))
    assert torch.equal(crop_flip(x, torch.zeros(4, 2, dtype=torch.long), all_, 0), x.flip(-1))
    corner = crop_flip(x, torch.zeros(4, 2, dtype=torch.long), none, 4)  # shifted down-right by 4, zero fill
    assert corner.shape == x.shape and corner[:, :, :4].eq(0).all() and corner[:, :, :, :4].eq(0).all()
    assert torch.equal(corner[:, :, 4:, 4:], x[:, :, :28, :28])


def test_classification_batches_flip_mirrors_unaugmented(c10):
    flip = ClassificationBatches(c10, 20, 0, "cpu", {"crop_padding": 0, "flip": True}).batch(2)[0]
    plain = ClassificationBatches(c10, 20, 0, "cpu", NO_AUG).batch(2)[0]
    same, mirrored = (flip == plain).flatten(1).all(1), (flip == plain.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and mirrored.any() and same.any()


# --- language modelling --------------------------------------------------------------------------------------

def test_lm_batches_random_shift_and_determinism():
    stream = torch.arange(1000)
    a, b = LMBatches(stream, 4, 16, 0, "cpu", "random"), LMBatches(stream, 4, 16, 0, "cpu", "random")
    x, y = a.batch(7)
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(y, x + 1)  # arange stream: the target is the next token
    assert torch.equal(x, b.batch(7)[0]) and not torch.equal(x, a.batch(8)[0])
    assert a.steps_per_epoch == 1000 // 64


def test_lm_batches_contiguous_is_batchify_bptt():
    stream = torch.arange(1003)
    b = LMBatches(stream, 4, 10, 0, "cpu", "contiguous")
    assert b.steps_per_epoch == (250 - 1) // 10
    x, y = b.batch(2)
    assert x[:, 0].tolist() == [20, 270, 520, 770] and torch.equal(y, x + 1)  # row r streams tokens r*250..
    assert torch.equal(b.batch(2 + b.steps_per_epoch)[0], x)  # wraps around epochs


def test_eval_batches_lm_predicts_each_token_once():
    stream = torch.arange(105)
    batches = list(eval_batches(stream, None, 3, "cpu", seq_len=10))
    targets = torch.cat([y.flatten() for _, y in batches])
    assert torch.equal(targets, torch.arange(1, 105)) and batches[-1][0].shape == (1, 4)
    assert sum(y.numel() for _, y in eval_batches(stream, None, 3, "cpu", seq_len=10, eval_tokens=31)) == 30


def test_eval_batches_classification_normalized(c10):
    batches = list(eval_batches(c10, "test", 8, "cpu"))
    assert [len(y) for _, y in batches] == [8, 8, 8, 6] and batches[0][0].dtype == torch.float32
    mean, std = torch.tensor(c10.mean).view(1, 3, 1, 1), torch.tensor(c10.std).view(1, 3, 1, 1)
    x0 = c10.eval_sets["test"][0][:8].float() / 255
    assert torch.allclose(batches[0][0] * std + mean, x0, atol=1e-6)


def test_word_vocab_order_of_appearance_and_eos(tmp_path):
    write_wikitext2(tmp_path, repeat=2)
    data = load_unverified(dataset="wikitext2", data_dir=str(tmp_path), download=False, seq_len=4)
    words = [w for split in ("train", "valid", "test") for line in WIKI_LINES[split] for w in (*line.split(), "<eos>")]
    vocab = list(dict.fromkeys(words))
    assert data.vocab_size == len(vocab) and data.info["tokenizer"] == f"word-{len(vocab)}"
    train_words = [w for line in WIKI_LINES["train"] * 2 for w in (*line.split(), "<eos>")]
    assert data.train.tolist() == [vocab.index(w) for w in train_words]
    assert data.train[0].item() == vocab.index("<eos>") == 0  # the leading blank line is just <eos>
    assert len(data.eval_sets["val"]) == 2 * sum(len(l.split()) + 1 for l in WIKI_LINES["valid"])


def test_word_ids_cache_reused(tmp_path, monkeypatch):
    write_wikitext2(tmp_path)
    first = load_unverified(dataset="wikitext2", data_dir=str(tmp_path), download=False)
    monkeypatch.setattr(tokens, "word_encode", lambda paths: pytest.fail("ids not served from cache"))
    again = load_unverified(dataset="wikitext2", data_dir=str(tmp_path), download=False)
    assert torch.equal(first.train, again.train) and again.vocab_size == first.vocab_size


def test_bpe_tokenizer_cached_and_deterministic(tmp_path, monkeypatch):
    write_wikitext2(tmp_path)
    cfg = dict(dataset="wikitext2", data_dir=str(tmp_path), download=False, tokenizer="bpe", bpe_vocab_size=300)
    first = load_unverified(**cfg)
    cache = tmp_path / "cache"
    assert (cache / "wikitext2-bpe-300.json").is_file() and first.info["tokenizer"].startswith("bpe-")
    assert first.train.max() < first.vocab_size <= 300
    tok = Tokenizer.from_file(str(cache / "wikitext2-bpe-300.json"))
    assert tok.decode(first.train.tolist()) == "".join(WIKI_LINES["train"]) * 20  # byte-level: lossless
    retrained = tokens.train_bpe(tmp_path / "wikitext-2/wiki.train.tokens", 300)
    assert retrained.to_str() == tok.to_str()  # deterministic training
    for p in cache.glob("wikitext2-ids-*"):
        p.unlink()  # force re-encoding; the tokenizer itself must come from the cache
    monkeypatch.setattr(tokens, "train_bpe", lambda *a: pytest.fail("BPE retrained despite cache"))
    assert torch.equal(load_unverified(**cfg).train, first.train)


# --- real data (skipped without $REPRO_DATA_DIR) -------------------------------------------------------------

def _real_root(folder: str) -> Path:
    if not REAL_DATA or not (Path(REAL_DATA) / folder).is_dir():
        pytest.skip(f"real data absent: set REPRO_DATA_DIR to a root holding {folder}/ (e.g. ../shared/datasets)")
    return Path(REAL_DATA)


@pytest.mark.data
def test_real_cifar10_variant_and_counts(monkeypatch):
    root = _real_root("cifar-10-batches-py")
    monkeypatch.setenv("REPRO_DATA_DIR", str(root))
    data = load_data({"dataset": "cifar10", "download": False})
    expected = "cifar10-recon" if (root / "SHA256SUMS").is_file() else "cifar10"
    assert data.info["variant"] == expected
    assert len(data.train_y) == 50_000 and len(data.eval_sets["test"][1]) == 10_000
    assert torch.bincount(data.train_y).tolist() == [5000] * 10 and data.train_x.dtype == torch.uint8


@pytest.mark.data
def test_real_wikitext2_word_vocab_and_counts(monkeypatch):
    root = _real_root("wikitext-2")
    monkeypatch.setenv("REPRO_DATA_DIR", str(root))
    data = load_data({"dataset": "wikitext2", "download": False})
    assert data.info["variant"] == "wikitext2" and data.vocab_size == 33_278
    assert len(data.train) == 2_088_628 and data.info["n_tokens"] == {"train": 2_088_628, "val": 217_646,
                                                                       "test": 245_569}


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_official_checksums_read_without_import_equal_torchvisions_attributes(dataset):
    import torchvision.datasets as tvd

    from shared.data import cifar

    cls = getattr(tvd, cifar.SPECS[dataset].tv_class)
    expected = {f"{cifar.SPECS[dataset].folder}/{name}": ("md5", md5)
                for name, md5 in [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]}
    assert cifar.official_checksums(dataset) == expected
    assert len(expected) == (7 if dataset == "cifar10" else 3)
