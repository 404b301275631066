"""A cache or checkpoint whose bytes changed after it was written is never used as if it were
good: the feature cache is computed again, a defence trained again, a checkpoint passed over for
the one before it. Each test damages a real file in place (same size, so only its content
tells) and reads it back the way a run does."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch
from ray import tune

from orchestrator.defence_cache import DefenceCache
from tests.helpers import ROOT, demos_folder
from trainables import tune_io
from trainables.checksums import checksum_file, damage
from trainables.data.feature_cache import build_feature_cache, load_features
from trainables.data.scan import scan_corpus
from trainables.data.settings import FeatureSettings
from trainables.errors import DamagedFile


def overwrite(path: Path, offset: int, size: int) -> None:
    """Overwrite ``size`` bytes at ``offset`` in place, keeping the file's size and mtime."""
    stat = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(os.urandom(size))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size


def test_a_damaged_feature_cache_is_computed_again(tmp_path, capsys):
    table = scan_corpus(demos_folder(tmp_path / "data"), "demos")
    settings = FeatureSettings(frames=40)
    path = build_feature_cache(table, settings, tmp_path / "cache", workers=1, progress=False)
    good = load_features(path).features.copy()
    overwrite(path, path.stat().st_size // 2, 4096)
    assert damage(path) == "its content changed after it was written"
    with pytest.raises(DamagedFile, match=str(path)):
        load_features(path)
    assert build_feature_cache(table, settings, tmp_path / "cache", workers=1,
                               progress=False) == path
    assert "cannot be trusted" in capsys.readouterr().err
    assert damage(path) is None
    assert (load_features(path).features == good).all()


def test_a_cache_file_without_its_checksum_is_not_trusted(tmp_path):
    cache = DefenceCache(tmp_path)
    cache.store("cnn4-abc", {"w": torch.ones(3)}, {"dev_uar": 0.5})
    checksum_file(cache.path("cnn4-abc")).unlink()  # a crash between the file and its checksum
    assert not cache.has("cnn4-abc")


def test_a_damaged_or_cut_defence_cache_counts_as_missing(tmp_path, capsys):
    cache = DefenceCache(tmp_path)
    weights = {"w": torch.arange(4096, dtype=torch.float32)}
    cache.store("cnn4-abc", weights, {"dev_uar": 0.5})
    assert cache.has("cnn4-abc")
    assert torch.equal(cache.load("cnn4-abc")["state_dict"]["w"], weights["w"])
    path = cache.path("cnn4-abc")
    overwrite(path, path.stat().st_size - 8192, 4096)
    assert not cache.has("cnn4-abc")
    assert "training that defence again" in capsys.readouterr().err
    with pytest.raises(DamagedFile):
        cache.load("cnn4-abc")
    cache.store("vgg16-abc", weights, {"dev_uar": 0.5})
    cut = cache.path("vgg16-abc")
    cut.write_bytes(cut.read_bytes()[:1000])  # a copy cut short
    assert not cache.has("vgg16-abc")


def save_checkpoint(folder: Path, state: dict) -> tune.Checkpoint:
    """A checkpoint folder as ``tune_io.report`` hands it to Tune."""
    folder.mkdir(parents=True)
    torch.save(state, folder / tune_io.STATE_FILE)
    tune_io.write_checksum(folder / tune_io.STATE_FILE)
    return tune.Checkpoint(str(folder))


def test_a_damaged_latest_checkpoint_gives_way_to_the_one_before(tmp_path, monkeypatch, capsys):
    trial = tmp_path / "lifelong-clockwise-lam1e4-seed0"
    save_checkpoint(trial / "checkpoint_000003", {"iteration": 3, "w": torch.ones(2048)})
    latest = save_checkpoint(trial / "checkpoint_000004", {"iteration": 4, "w": torch.ones(2048)})
    monkeypatch.setattr(tune_io.tune, "get_checkpoint", lambda: latest)
    assert tune_io.restore()["iteration"] == 4
    overwrite(trial / "checkpoint_000004" / tune_io.STATE_FILE, 2000, 1024)
    assert tune_io.restore()["iteration"] == 3
    assert "checkpoint_000003 instead" in capsys.readouterr().out
    overwrite(trial / "checkpoint_000003" / tune_io.STATE_FILE, 2000, 1024)
    assert tune_io.restore() is None  # nothing intact: the trial starts over, it does not fail
    assert "starting the trial over" in capsys.readouterr().out


def test_every_checkpoint_load_is_weights_only():
    loads = []
    for path in [*(ROOT / "trainables").rglob("*.py"), *(ROOT / "orchestrator").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                loads.append({k.arg: ast.unparse(k.value) for k in node.keywords})
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("eval", "exec",
                                                                        "yaml.load"):
                raise AssertionError(f"{path}: {ast.unparse(node)}")
    # Two load sites since every checkpoint goes through tune_io.load_checkpoint (the other is
    # the defence cache); the floor only guards against a scan that finds nothing.
    assert len(loads) >= 2 and all(k.get("weights_only") == "True" for k in loads)
