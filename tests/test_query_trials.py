"""The query-only Square attack as a strategy of the grid: its trials, its config's checks, the
generator whose SNR it takes, and query_attack.csv. No Ray."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from orchestrator.config import load_config
from orchestrator.grid import (ATTACK_EXPERIMENT, CONTINUED_EXPERIMENT, GENERATOR_TARGET,
                               attack_trials, experiment_of)
from orchestrator.reporter import query_table, tables
from orchestrator.run import best_transfer
from orchestrator.storage import Storage
from tests.helpers import stage_records, trials_frame
from trainables import metric_keys as keys
from trainables.errors import ConfigError
from trainables.stage_record import StageRecord
from trainables.trial_folder import QUERY_FILE

HELD_OUT = [("defences={cnn4: {model: cnn4}, vgg16: {model: vgg16}, resnet50: {model: resnet50}, "
             "crnn: {model: crnn, held_out: true}}")]


def test_one_query_trial_per_held_out_defence_and_seed_after_the_generators():
    config = load_config(None, [*HELD_OUT, "grid.strategies=[single-task, multi-task, square]",
                                "grid.seeds=[0, 1]"])
    queries = [t for t in attack_trials(config) if t.strategy == "square"]
    assert [t.id for t in queries] == ["square-crnn-seed0", "square-crnn-seed1"]
    assert all(t.defences == ("crnn",) and not t.in_table for t in queries)
    assert all(t.snr_from == GENERATOR_TARGET and experiment_of(t) == CONTINUED_EXPERIMENT
               for t in queries)
    fixed = load_config(None, [*HELD_OUT, "grid.strategies=[square]",
                               "query.target_snr_db=20"])
    assert [(t.id, experiment_of(t)) for t in attack_trials(fixed)] == [
        ("square-crnn-seed0", ATTACK_EXPERIMENT)]


@pytest.mark.parametrize("overrides, message", [
    (["grid.strategies=[square]"], (r"grid.strategies: the square attack queries each held-out "
                                    r"defence, but no defence is held out")),
    ([*HELD_OUT, "grid.strategies=[square]", "data.features.frames=373", "query.p_init=0.2"],
     (r"query.p_init: 0.2 makes the Square attack's first square larger than a 373 x 64 input "
      r"allows; give one below 0.169")),
    ([*HELD_OUT, "query.budgets=[]"], r"query.budgets: empty"),
    ([*HELD_OUT, "query.budgets=[10, 0]"], r"query.budgets\[1\]: must be > 0"),
    ([*HELD_OUT, "query.budgets=[10, 10]"], r"query.budgets: a budget is given twice"),
])
def test_bad_query_settings_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_config(None, overrides)
    assert "\n" not in str(error.value)


def record(tmp_path, trial_id, crnn_dev, snr, crnn_test=0.5):
    folder = tmp_path / trial_id / "records"
    folder.mkdir(parents=True)
    StageRecord(trial_id=trial_id, stage=1, global_step=1, defences=("cnn4",), finished=True,
                classes=("a",), metrics={keys.uar("crnn", "dev"): crnn_dev,
                                         keys.uar("crnn", "test"): crnn_test,
                                         keys.perturbation("dev", "snr_db"): snr}
                ).save(folder / "stage-1.json")


def test_the_query_attack_takes_the_snr_of_the_generator_that_transfers_best_on_dev(tmp_path):
    config = load_config(None, [*HELD_OUT, "grid.strategies=[single-task, multi-task, square]",
                                "grid.seeds=[0, 1]"])
    trials = attack_trials(config)
    record(tmp_path, "single-task-cnn4-seed0", 0.40, 21.0, crnn_test=0.1)  # best on test only
    record(tmp_path, "single-task-vgg16-seed0", 0.30, 18.0)  # best on dev: chosen
    record(tmp_path, "multi-task-cnn4+vgg16+resnet50-seed0", 0.35, 15.0)
    record(tmp_path, "single-task-cnn4-seed1", 0.20, 30.0)  # another seed's
    assert best_transfer(Storage.at(tmp_path), "", trials) == {
        "square-crnn-seed0": ("single-task-vgg16-seed0", 18.0),
        "square-crnn-seed1": ("single-task-cnn4-seed1", 30.0)}


def test_query_attack_csv_puts_the_generators_transfer_at_zero_queries(tmp_path):
    config = load_config(None, [*HELD_OUT, "grid.strategies=[single-task, square]"])

    def metrics_of(trial, trained):
        values = {keys.uar(d, s): 0.6 for d in config.defences for s in keys.SPLITS}
        return {**values, keys.uar("crnn", "test", "clean_uar"): 0.8,
                keys.perturbation("test", "snr_db"): 19.5}

    frame = trials_frame(config, stage_records(config, metrics_of))
    assert "square-crnn-seed0" not in set(frame["trial_id"])  # not a row of Table 1
    table, _ = tables(config, frame, {})
    assert "square" not in set(table["method"])
    folder = tmp_path / CONTINUED_EXPERIMENT / "square-crnn-seed0"
    folder.mkdir(parents=True)
    (folder / QUERY_FILE).write_text(json.dumps({
        "trial_id": "square-crnn-seed0", "defence": "crnn", "seed": 0, "eps": 0.1,
        "target_snr_db": 19.5, "target_from": "single-task-vgg16-seed0", "utterances": 16,
        "clean_uar": 0.75, "points": [
            {"queries": q, "uar": u, "snr_db": 20.1, "linf": 0.1, "ms_per_utterance": 3.0}
            for q, u in ((100, 0.5), (10, 0.7))]}))
    queries = query_table(config, Storage.at(tmp_path), frame)
    assert list(queries["queries"]) == [0, 10, 100]
    assert list(queries["method"]) == ["single-task", "square", "square"]
    assert list(queries["uar"]) == [60.0, 70.0, 50.0]
    assert queries["snr_db"].iloc[0] == 19.5 and (queries["defence"] == "CRNN").all()
    # Without the generator scored on the query attack's utterances: its whole test split.
    assert np.isnan(queries["utterances"].iloc[0]) and queries["utterances"].iloc[1] == 16
    curve = json.loads((folder / QUERY_FILE).read_text())
    curve["generator"] = {"uar": 0.55, "snr_db": 19.0, "linf": 0.3}
    (folder / QUERY_FILE).write_text(json.dumps(curve))
    paired = query_table(config, Storage.at(tmp_path), frame)
    assert np.allclose(paired["uar"], [55.0, 70.0, 50.0]) and (paired["utterances"] == 16).all()
    assert (paired["clean_uar"] == 75.0).all() and paired["method"].iloc[0] == "single-task"


def test_findings_say_how_many_queries_match_the_generators_transfer():
    from orchestrator.findings import _queries_to_match

    rows = [{"defence": "CRNN", "seed": s, "queries": q, "uar": u + s, "snr_db": 20.0}
            for s in (0, 1) for q, u in ((0, 40.0), (10, 60.0), (100, 39.0), (1000, 20.0))]
    line = _queries_to_match(pd.DataFrame(rows))[0]
    assert line.startswith("8b. Queries the Square attack needs on CRNN")
    assert "100 queries per utterance (UAR 39.5 against the generator's 40.5)" in line
    never = [r | {"uar": 90.0} for r in rows if r["queries"]] + [r for r in rows if not r["queries"]]
    assert "not within 1,000 queries per utterance" in _queries_to_match(pd.DataFrame(never))[0]
    assert _queries_to_match(None) == [] and _queries_to_match(pd.DataFrame()) == []
