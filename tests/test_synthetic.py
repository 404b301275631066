import hashlib
import os

import numpy as np
import pytest
import soundfile

from tests.helpers import TINY_SPEC
from trainables.data.scan import scan_corpus
from trainables.data.synthetic import generate
from trainables.data.settings import SyntheticSpec


def _digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.wav"))}


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    spec = SyntheticSpec(speakers=3, utterances_per_emotion=1, min_seconds=0.5, max_seconds=0.8)
    one = _digest(generate(tmp_path / "a", spec, workers=1))
    two = _digest(generate(tmp_path / "b", spec, workers=2))
    assert one == two and len(one) == 3 * 7
    other = _digest(generate(tmp_path / "c", SyntheticSpec(**{**spec.__dict__, "seed": 1}),
                             workers=1))
    assert set(other.values()).isdisjoint(one.values())


def test_corpus_reads_as_demos_with_every_class_and_both_genders(tiny_corpus):
    table = scan_corpus(tiny_corpus, "synthetic")
    assert len(table) == TINY_SPEC.speakers * 7 * TINY_SPEC.utterances_per_emotion
    assert set(table["gender"]) == {"f", "m"}
    assert table.groupby("split")["emotion"].nunique().to_dict() == {"dev": 7, "test": 7,
                                                                     "train": 7}
    for path in table["path"][:10]:
        info = soundfile.info(path)
        assert info.samplerate == 16_000
        assert TINY_SPEC.min_seconds - 0.01 <= info.duration <= TINY_SPEC.max_seconds + 0.01


def test_emotions_differ_in_pitch_and_loudness(tmp_path):
    from trainables.data.synthetic import make_speaker, synthesise
    speaker = make_speaker(0, seed=0)
    loud = {e: [] for e in ("anger", "sadness")}
    for emotion in loud:
        for i in range(5):
            wave = synthesise(speaker, emotion, 1.5, 1.0, np.random.default_rng(i))
            loud[emotion].append(np.sqrt(np.mean(wave ** 2)))
    assert np.mean(loud["anger"]) > 2 * np.mean(loud["sadness"])


@pytest.mark.slow
def test_a_dead_generation_leaves_no_temporary_corpus_behind(tmp_path):
    """A run stopped mid-generation left its temporary folder (tens of MB) for ever; the next
    start removes it, and leaves those of live processes and of other hosts alone."""
    import socket
    import subprocess

    from trainables.data.synthetic import ensure_corpus

    ended = subprocess.Popen(["true"])  # its pid no longer runs once waited for
    ended.wait()
    host = socket.gethostname()
    dead = tmp_path / f"synthetic-abc.tmp-{host}-{ended.pid}"
    live = tmp_path / f"synthetic-abc.tmp-{host}-{os.getpid()}"
    elsewhere = tmp_path / f"synthetic-abc.tmp-another-host-{ended.pid}"
    for folder in (dead, live, elsewhere):
        (folder / "half.wav").parent.mkdir()
        (folder / "half.wav").write_bytes(b"RIFF")
    corpus = ensure_corpus(tmp_path, TINY_SPEC)
    assert (corpus / "spec.json").exists()
    assert not dead.exists() and live.exists() and elsewhere.exists()
