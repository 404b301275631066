"""Every file the reporter writes reaches its final path only by a rename (the atomic helper), so
a crash never leaves a half-written table.

``write_report`` runs for real on a recorded run laid out on disk as Tune leaves it (each trial's
stage records, a ``figure2.npz``, the trial status and the defences' metrics). Two checks:
Python's audit hooks watch every file opened and renamed (nothing is replaced), and a rename
made to fail leaves the previous file whole.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from orchestrator.config import ExperimentConfig, config_to_dict
from orchestrator.grid import attack_trials, experiment_of
from orchestrator.records import write_defences, write_status
from orchestrator.reporter import write_report
from orchestrator.storage import Storage
from tests.helpers import ROOT, run_cli
from tests.helpers import clean_defences
from tests.test_lambda_selection import lambda_records
from trainables.figures import save_figure_data
from trainables.trial_folder import FIGURE_FILE, record_path

REPORT_FILES = ("trials.parquet", "table1.csv", "perturbation.csv", "lambda_sweep.csv",
                "lambda_sweep.png", "figure2.png", "paper_comparison.csv", "findings.md")


def recorded_run(root: Path) -> tuple[ExperimentConfig, Path, Path]:
    """A finished smoke-grid run on disk: ``(config, results, storage)``. Each trial's stage
    records lie in its folder as the trainable writes them, one trial leaves a Figure-2
    recording, every trial is ``ok``."""
    config, records, defences = lambda_records()
    results, storage = root / "results", root / "results" / "runs"
    specs = {t.id: t for t in attack_trials(config)}
    for record in records:
        path = storage / experiment_of(specs[record.trial_id]) / record.trial_id / \
            record_path(record.stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        record.save(path)
    lifelong = next(t for t in specs.values() if t.strategy == "lifelong")
    save_figure_data(storage / experiment_of(lifelong) / lifelong.id / FIGURE_FILE,
                     real=np.zeros((64, 64), np.float32),
                     perturbation=np.full((64, 64), 0.1, np.float32), label="anger",
                     predictions={d: ("anger", "fear") for d in config.defences})
    write_status(results, {t: "ok" for t in specs})
    write_defences(results, defences)
    return config, results, storage


class FileWatch:
    """Every file opened for writing and every rename under one folder, seen through Python's
    audit hooks (``open``, ``os.rename``, which ``os.replace`` also raises). A hook cannot be
    removed, so one hook serves every watch and records only while a watch is active."""

    _active: list["FileWatch"] = []
    _installed = False

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self.written: list[Path] = []  # opened for writing (Python's open, os.open, mkstemp)
        self.renamed: list[tuple[Path, Path]] = []  # (source, destination)

    @classmethod
    def _hook(cls, event: str, args: tuple) -> None:
        if not cls._active or event not in ("open", "os.rename"):
            return
        for watch in cls._active:
            watch._record(event, args)

    def _inside(self, path) -> Path | None:
        if isinstance(path, int):
            return None  # an already open descriptor
        path = Path(os.fsdecode(path)).resolve()
        return path if path.is_relative_to(self.folder) else None

    def _record(self, event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writes = (any(c in mode for c in "wax+") if isinstance(mode, str)
                      else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
            if writes and (inside := self._inside(path)) is not None:
                self.written.append(inside)
        else:
            source, destination = self._inside(args[0]), self._inside(args[1])
            if source is not None and destination is not None:
                self.renamed.append((source, destination))

    @classmethod
    @contextmanager
    def on(cls, folder: Path) -> Iterator["FileWatch"]:
        if not cls._installed:
            sys.addaudithook(cls._hook)
            cls._installed = True
        watch = cls(folder)
        cls._active.append(watch)
        try:
            yield watch
        finally:
            cls._active.remove(watch)


def test_every_report_file_arrives_by_a_rename_of_a_temporary_file(tmp_path):
    config, results, storage = recorded_run(tmp_path)
    with FileWatch.on(results) as watch:
        write_report(config, results, Storage.at(storage))
    arrived = {destination: source for source, destination in watch.renamed}
    for name in REPORT_FILES:
        final = (results / name).resolve()
        assert final.stat().st_size > 0, name
        # Renamed into place from a file beside it (same file system: an atomic rename) ...
        assert final in arrived, f"{name} was not renamed into place"
        assert arrived[final].parent == final.parent and arrived[final] != final
        # ... and never opened for writing where a reader could see it half-written.
        assert final not in watch.written, f"{name} was written in place"
    # The watch does see writes: the temporary files were opened (mkstemp), so an in-place
    # write would have been seen too.
    assert set(arrived.values()) <= set(watch.written)
    assert not [p for p in results.iterdir() if p.name.endswith(".tmp")]  # none left behind


@pytest.mark.parametrize("name", ["table1.csv", "findings.md"])
def test_a_crash_before_the_rename_leaves_the_previous_file_whole(tmp_path, monkeypatch, name):
    """The crash comes where an atomic write is most exposed: its temporary file complete, the
    rename not done. The previous report must still be there, whole, and no temporary file."""
    config, results, storage = recorded_run(tmp_path)
    write_report(config, results, Storage.at(storage))
    previous = (results / name).read_bytes()
    pd.read_csv(results / "table1.csv")  # a whole table to start from
    # The next Table 1 differs (another clean UAR), so a write in place would show there.
    write_defences(results, clean_defences(config, dev=lambda s: 0.5, test=lambda s: 0.5))
    replace = os.replace

    def crash_at(source, destination, *args, **kwargs):
        if Path(destination).name == name:
            raise OSError(f"simulated crash before renaming {name} into place")
        return replace(source, destination, *args, **kwargs)

    monkeypatch.setattr(os, "replace", crash_at)
    with pytest.raises(OSError, match="simulated crash"):
        write_report(config, results, Storage.at(storage))
    assert (results / name).read_bytes() == previous
    assert not [p for p in results.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_report_only_says_when_it_rebuilds_from_fewer_records_and_keeps_the_old_table(tmp_path):
    """A record cut short (a crash, a full disk) is named, and a rebuilt Table 1 with fewer
    complete rows than the one it replaces says so and keeps the old one beside it."""
    config, results, storage = recorded_run(tmp_path)
    (results / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config)))
    first = run_cli("--results", str(results), "--report-only", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    complete = pd.read_csv(results / "table1.csv")
    assert (complete["status"] == "ok").all()
    assert "cut short" not in first.stdout and not (results / "table1.previous.csv").exists()

    record = next(storage.glob(f"*/single-task-cnn4-seed0/{record_path(1)}"))
    record.write_text(record.read_text()[:-40])  # its only stage record, cut
    second = run_cli("--results", str(results), "--report-only", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert f"{record} is cut short" in second.stdout
    assert "the previous table is kept as" in second.stdout
    pd.testing.assert_frame_equal(pd.read_csv(results / "table1.previous.csv"), complete)
    rebuilt = pd.read_csv(results / "table1.csv")
    assert (rebuilt["status"] != "ok").sum() >= 1


@pytest.mark.slow
def test_report_only_imports_neither_torch_nor_ray(tmp_path):
    """A report is pandas, matplotlib and the run's own files: rebuilding one loads no model
    code, so it runs where the training stack is not installed and starts in a second."""
    config, results, _ = recorded_run(tmp_path)
    (results / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config)))
    probe = ("import sys; from pathlib import Path; from orchestrator.cli import main; "
             f"code = main(['--results', {str(results)!r}, '--report-only']); "
             "print(code, sorted(m for m in ('torch', 'ray', 'librosa') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "0 []"
    assert (results / "table1.csv").exists()
