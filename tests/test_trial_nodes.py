"""What a trial's record says of where it ran, and the run's check that every finished trial's
records reached the storage."""

from __future__ import annotations

import json

from orchestrator.config import load_config
from orchestrator.run import unrecorded_trials
from tests.helpers import TINY, stage_records, trials_frame
from trainables import metric_keys as keys
from trainables.stage_record import StageRecord


def _metrics(config):
    def metrics_of(trial, trained):
        return {keys.uar(d, s): 0.5 for d in config.defences for s in keys.SPLITS}
    return metrics_of


def test_a_finished_trial_whose_records_did_not_reach_the_storage_is_named(tmp_path):
    """What a trial on another node wrote to a folder nobody uploads looked like a failed row
    of a run that exited 0."""
    config = load_config(TINY)
    records = stage_records(config, _metrics(config))
    lost = "single-task-vgg16-seed0"
    frame = trials_frame(config, [r for r in records if r.trial_id != lost])
    frame.to_parquet(tmp_path / "trials.parquet", index=False)
    assert unrecorded_trials(tmp_path) == [lost]
    trials_frame(config, records).to_parquet(tmp_path / "trials.parquet", index=False)
    assert unrecorded_trials(tmp_path) == []


def test_a_record_names_its_node_and_an_older_record_without_one_still_loads(tmp_path):
    record = StageRecord(trial_id="t", stage=1, global_step=5, defences=("cnn4",), finished=True,
                         classes=("a", "b"), metrics={keys.uar("cnn4", "dev"): 0.5},
                         node="ab" * 28)
    path = tmp_path / "stage-1.json"
    record.save(path)
    assert StageRecord.load(path) == record
    older = json.loads(path.read_text())
    del older["node"]
    path.write_text(json.dumps(older))
    assert StageRecord.load(path).node == ""
