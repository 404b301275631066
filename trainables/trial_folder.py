"""What an attack trial leaves in its folder (under the run's storage) for the report: one
stage record per evaluated stage, and once it finishes, Figure 2's data and its audio examples.
Names only: the driver reads the folder without importing torch."""

from __future__ import annotations

RECORDS_FOLDER = "records"  # stage-<n>.json, ``trainables.stage_record``
FIGURE_FILE = "figure2.npz"  # ``trainables.figures.save_figure_data``
AUDIO_FOLDER = "audio"  # WAV pairs, ``trainables.audio_export.write_examples``
SNR_FILE = "snr.json"  # in AUDIO_FOLDER: each example's SNR in the feature and waveform domain
QUERY_FILE = "query_curve.json"  # a query attack's UAR against its queries, and its budget


def record_path(stage: int) -> str:
    """A stage's record inside its trial's folder: ``records/stage-2.json``."""
    return f"{RECORDS_FOLDER}/stage-{stage}.json"
