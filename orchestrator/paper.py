"""The paper's published Table 1 (Ren, Han, Cummins and Schuller, Interspeech 2020, Table 1:
adversarial UAR in percent of each defence on DEMoS dev and test, lower is a stronger attack),
transcribed as published into ``paper_table1.csv`` in this run's column names, so that every
finding can be computed on it the same way as on a run.

The paper prints no clean row and no VGG-16 single-task row; its ``lambda`` column holds the
values its text says were chosen on dev. Its defences were pre-trained in an earlier paper and
not released, so a reproduction compares effects (which attack is stronger, by how much), not
absolute values.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PAPER_TABLE = Path(__file__).with_name("paper_table1.csv")


def paper_table1() -> pd.DataFrame:
    """The paper's Table 1: ``method, defences, lambda`` and ``<defence>_<split>`` columns."""
    return pd.read_csv(PAPER_TABLE)


def paper_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """One row per Table-1 row that the paper or this run has: the paper's value and ours of
    every column the paper reports (``paper_cnn4_test``, ``ours_cnn4_test``, ...), and of the
    lambda chosen on dev."""
    paper = paper_table1()
    values = [c for c in paper.columns if c not in ("method", "defences")]
    ours = table.reindex(columns=["method", "defences", *values])
    merged = paper.merge(ours, on=["method", "defences"], how="outer",
                         suffixes=("_paper", "_ours"), indicator=True)
    columns = ["method", "defences"]
    for column in values:
        merged = merged.rename(columns={f"{column}_paper": f"paper_{column}",
                                        f"{column}_ours": f"ours_{column}"})
        columns += [f"paper_{column}", f"ours_{column}"]
    order = {m: i for i, m in enumerate(["clean", "single-task", "noise", "universal",
                                         "multi-task", "transfer", "lifelong"])}
    merged = merged.sort_values("method", key=lambda s: s.map(order), kind="stable")
    return merged[columns].reset_index(drop=True)
