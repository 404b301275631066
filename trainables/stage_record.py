"""The record of one evaluated stage of an attack trial: what the trainable writes and the report
reads (``orchestrator.records``), in the project's own file, not Tune's.

A trial writes one record per evaluated stage (``trainables.trial_folder.record_path``), whole
(``trainables.tune_io.publish``) and before the checkpoint that ends the stage, so that Tune's
sync of the folder carries it to the run's storage with that checkpoint. A retried trial writes
a stage's record again: the newest is the one on disk. ``trials.parquet`` is these records,
one row each, beside their trial's spec (``orchestrator.trial_table``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trainables import metric_keys as keys
from trainables.errors import DamagedFile

SCHEMA = 1


@dataclass(frozen=True)
class StageRecord:
    """One evaluated stage.

    - ``stage``: the stages done, counted from 1 as the console counts;
    - ``global_step``: the attacker's iterations so far;
    - ``defences``: the defences trained on by then, in training order (config names);
    - ``metrics``: every ``trainables.metric_keys`` UAR (in [0, 1]) and perturbation metric;
    - ``confusion``: by ``metric_keys.confusion(defence, split)``, the adversarial confusion
      matrix, rows the true class and columns the predicted one, both in ``classes`` order;
    - ``node``: the Ray node id of the worker that wrote the record (on a cluster, where the
      trial ran; a trial retried on another node writes its later stages there). Records
      written before it was recorded load with ``""``.
    """

    trial_id: str
    stage: int
    global_step: int
    defences: tuple[str, ...]
    finished: bool
    classes: tuple[str, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, list[list[int]]] = field(default_factory=dict)
    node: str = ""

    def to_json(self) -> str:
        return json.dumps({"schema": SCHEMA, **asdict(self)}) + "\n"

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> "StageRecord":
        """The record in ``path``, checked field by field; ``DamagedFile`` naming the file if
        it is cut, not JSON, of another schema or missing a field."""
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise DamagedFile(f"stage record {path} cannot be read ({error})") from None
        return cls.from_json(text, str(path))

    @classmethod
    def from_json(cls, text: str, source: str) -> "StageRecord":
        """The record written as ``text`` (``to_json``), checked as ``load`` checks it;
        ``source`` names where it was read in a ``DamagedFile``."""
        path = source
        try:
            data = json.loads(text)
            if data.pop("schema") != SCHEMA:
                raise ValueError("another schema")
            record = cls(trial_id=str(data["trial_id"]), stage=int(data["stage"]),
                         global_step=int(data["global_step"]),
                         defences=tuple(map(str, data["defences"])),
                         finished=bool(data["finished"]),
                         classes=tuple(map(str, data["classes"])),
                         metrics={k: float(v) for k, v in data["metrics"].items()},
                         confusion={k: [[int(c) for c in row] for row in matrix]
                                    for k, matrix in data["confusion"].items()},
                         node=str(data.get("node", "")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise DamagedFile(f"stage record {path} is cut short or damaged "
                              f"({type(error).__name__}: {error})") from None
        unknown = [k for k in record.metrics if keys.parse(k) is None]
        if record.stage < 1 or unknown:
            raise DamagedFile(f"stage record {path} is damaged (stage {record.stage}, "
                              f"unknown metrics {unknown[:3]})")
        return record
