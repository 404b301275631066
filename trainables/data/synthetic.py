"""Our own emotional-speech corpus, generated with no download, in DEMoS layout.

A source-filter model: a glottal pulse train (with jitter and shimmer) shaped by a spectral-tilt
filter, mixed with breath noise, passed through a cascade of formant resonators that change
with every syllable (vowel-like segments at a syllable rhythm, with pauses between words).
The emotion sets the pitch level, range and contour, the speaking rate, the loudness, the
spectral tilt and the voice quality (breathiness, jitter, tremor); the speaker sets the base pitch,
the formant scale and the gender, and how strongly they express emotions. Every utterance draws
its own deviations, scaled by ``variability``: that is the corpus's difficulty knob.

Files are named as DEMoS names them (``PR_f_03_gio12a.wav``), so the DEMoS adapter reads them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile

from trainables.data.corpora import DemosCorpus
from trainables.data.settings import SyntheticSpec

# Emotion profiles: pitch scale, pitch range (semitones), contour slope over the utterance
# (semitones), syllables per second, loudness (dB), spectral tilt (one-pole low-pass
# coefficient: higher is darker), breath-noise ratio, jitter, tremor depth (semitones).
PROFILES: dict[str, dict[str, float]] = {
    "anger":     dict(pitch=1.30, range=7.0, slope=-3.0, rate=5.2, loud=6.0, tilt=0.55,
                      breath=0.04, jitter=0.015, tremor=0.0),
    "disgust":   dict(pitch=0.95, range=5.0, slope=-1.0, rate=3.4, loud=0.0, tilt=0.75,
                      breath=0.10, jitter=0.035, tremor=0.0),
    "fear":      dict(pitch=1.40, range=3.5, slope=1.0, rate=5.8, loud=-2.0, tilt=0.72,
                      breath=0.20, jitter=0.030, tremor=0.8),
    "guilt":     dict(pitch=0.90, range=2.5, slope=-1.5, rate=3.2, loud=-5.0, tilt=0.85,
                      breath=0.16, jitter=0.020, tremor=0.0),
    "happiness": dict(pitch=1.25, range=9.0, slope=2.0, rate=4.8, loud=3.0, tilt=0.60,
                      breath=0.05, jitter=0.010, tremor=0.0),
    "sadness":   dict(pitch=0.85, range=2.0, slope=-2.5, rate=2.7, loud=-6.0, tilt=0.88,
                      breath=0.12, jitter=0.018, tremor=0.2),
    "surprise":  dict(pitch=1.45, range=11.0, slope=6.0, rate=4.4, loud=2.0, tilt=0.62,
                      breath=0.06, jitter=0.012, tremor=0.0),
}
# Formants (Hz) and bandwidths of five vowels for a male vocal tract.
VOWELS = np.array([[730, 1090, 2440, 3400], [530, 1840, 2480, 3500], [270, 2290, 3010, 3700],
                   [570, 840, 2410, 3300], [300, 870, 2240, 3300]], dtype=float)
BANDWIDTHS = np.array([80, 100, 140, 200], dtype=float)
CODES = {emotion: code for code, emotion in DemosCorpus.codes.items()}


@dataclass(frozen=True)
class Speaker:
    gender: str
    pitch: float  # base f0 in Hz
    formant_scale: float
    expressiveness: float  # how far the speaker moves from neutral for every emotion


def make_speaker(index: int, seed: int) -> Speaker:
    """Speaker ``index`` (0-based): even indices female, odd male."""
    rng = np.random.default_rng([seed, 1_000_003, index])
    female = index % 2 == 0
    return Speaker(gender="f" if female else "m",
                   pitch=float(rng.normal(210, 22) if female else rng.normal(118, 14)),
                   formant_scale=float(rng.normal(1.16 if female else 1.0, 0.04)),
                   expressiveness=float(rng.uniform(0.75, 1.15)))


def _lfilter(b: list[float], a: list[float], signal: np.ndarray) -> np.ndarray:
    # Imported here: scipy.signal takes about a second to import, and the command line imports
    # this module (for SyntheticSpec) to check a config before anything else runs.
    from scipy.signal import lfilter

    return lfilter(b, a, signal)


def _resonator(signal: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    r = np.exp(-np.pi * bandwidth / sr)
    theta = 2 * np.pi * min(freq, 0.45 * sr) / sr
    a = [1.0, -2 * r * np.cos(theta), r * r]
    return _lfilter([sum(a)], a, signal)  # unit gain at 0 Hz, as in Klatt's resonators


def _pitch_contour(n: int, syllables: list[tuple[int, int]], base: float, p: dict,
                   rng: np.random.Generator, sr: int) -> np.ndarray:
    t = np.arange(n) / n
    semitones = p["slope"] * (t - 0.5)
    for start, end in syllables:  # one accent per syllable, within the emotion's range
        semitones[start:end] += rng.uniform(-0.5, 0.5) * p["range"]
    semitones = np.convolve(semitones, np.hanning(int(0.06 * sr)) / (0.03 * sr), mode="same")
    if p["tremor"] > 0:
        semitones += p["tremor"] * np.sin(2 * np.pi * rng.uniform(5, 8) * np.arange(n) / sr)
    return base * 2 ** (semitones / 12)


def _syllables(n: int, rate: float, rng: np.random.Generator, sr: int) -> list[tuple[int, int]]:
    """Voiced nuclei as (start, end) samples, at ``rate`` syllables/s with pauses between words."""
    spans, position = [], int(rng.uniform(0.05, 0.2) * sr)
    while position < n - int(0.1 * sr):
        length = int(sr / rate * rng.lognormal(0, 0.25))
        voiced = int(length * rng.uniform(0.55, 0.8))
        spans.append((position, min(position + voiced, n)))
        position += length
        if rng.random() < 0.2:
            position += int(rng.uniform(0.1, 0.3) * sr)
    return spans


def synthesise(speaker: Speaker, emotion: str, seconds: float, variability: float,
               rng: np.random.Generator, sr: int = 16_000) -> np.ndarray:
    """One utterance as float32 in [-1, 1]."""
    neutral = dict(pitch=1.0, range=3.0, slope=-1.0, rate=4.0, loud=0.0, tilt=0.72,
                   breath=0.08, jitter=0.015, tremor=0.0)
    spread = dict(pitch=0.08, range=1.5, slope=1.5, rate=0.5, loud=2.0, tilt=0.05,
                  breath=0.03, jitter=0.006, tremor=0.15)
    p = {}
    for name, target in PROFILES[emotion].items():
        value = neutral[name] + speaker.expressiveness * (target - neutral[name])
        p[name] = value + variability * spread[name] * rng.standard_normal()
    p["tilt"] = float(np.clip(p["tilt"], 0.2, 0.97))
    p["rate"] = max(p["rate"], 1.5)
    for name in ("breath", "jitter", "tremor", "range"):
        p[name] = max(p[name], 0.0)

    n = int(seconds * sr)
    syllables = _syllables(n, p["rate"], rng, sr)
    f0 = _pitch_contour(n, syllables, speaker.pitch * p["pitch"], p, rng, sr)
    block = int(0.005 * sr)  # jitter: the period varies every 5 ms
    f0 *= np.repeat(1 + p["jitter"] * rng.standard_normal(n // block + 1), block)[:n]
    phase = np.cumsum(f0 / sr)
    pulses = np.zeros(n)
    wraps = np.flatnonzero(np.diff(np.floor(phase)) > 0)
    pulses[wraps] = 1 + 3 * p["jitter"] * rng.standard_normal(wraps.size)  # shimmer
    source = _lfilter([1 - p["tilt"]], [1, -p["tilt"]], _lfilter([1.0], [1, -0.9], pulses))

    voicing = np.zeros(n)
    excitation = np.zeros(n)
    noise = rng.standard_normal(n)
    for start, end in syllables:
        length = end - start
        ramp = min(int(0.02 * sr), length // 2)
        envelope = np.ones(length)
        envelope[:ramp] = np.hanning(2 * ramp)[:ramp]
        envelope[length - ramp:] = np.hanning(2 * ramp)[ramp:]
        voicing[start:end] = envelope
    excitation = voicing * (source / (np.std(source) + 1e-9) + p["breath"] * 4 * noise)

    tract = np.zeros(n)
    formants = speaker.formant_scale * VOWELS
    for start, end in syllables:  # a vowel per syllable, filtered with a short tail
        segment = excitation[start:min(end + int(0.03 * sr), n)]
        vowel = formants[rng.integers(len(formants))] * rng.normal(1, 0.03 * variability, 4)
        for freq, bandwidth in zip(vowel, BANDWIDTHS):
            segment = _resonator(segment, freq, bandwidth, sr)
        tract[start:start + segment.size] += segment
    tract /= np.sqrt(np.mean(tract[voicing > 0.5] ** 2)) + 1e-9
    # Consonant-like bursts of high-passed noise before some syllables.
    for start, _ in syllables:
        if rng.random() < 0.5:
            burst = int(rng.uniform(0.02, 0.06) * sr)
            lo = max(start - burst, 0)
            tract[lo:start] += 0.3 * np.diff(noise[lo:start + 1]) * np.hanning(start - lo)

    tract *= 0.08 * 10 ** (p["loud"] / 20)
    tract += 10 ** (-60 / 20) * rng.standard_normal(n)  # a noise floor, never digital silence
    return np.clip(tract, -0.99, 0.99).astype(np.float32)


def _file_name(speaker_index: int, speaker: Speaker, emotion: str, item: int,
               rng: np.random.Generator) -> str:
    kind = "PR" if rng.random() < 0.6 else "NP"
    return f"{kind}_{speaker.gender}_{speaker_index + 1:02d}_{CODES[emotion]}{item:02d}a.wav"


def _write_speaker(args: tuple[SyntheticSpec, int, str]) -> int:
    spec, index, folder = args
    speaker = make_speaker(index, spec.seed)
    written = 0
    for emotion_index, emotion in enumerate(PROFILES):
        for item in range(spec.utterances_per_emotion):
            rng = np.random.default_rng([spec.seed, index, emotion_index, item])
            seconds = rng.uniform(spec.min_seconds, spec.max_seconds)
            wave = synthesise(speaker, emotion, seconds, spec.variability, rng, spec.sample_rate)
            name = _file_name(index, speaker, emotion, item, rng)
            soundfile.write(os.path.join(folder, name), wave, spec.sample_rate, subtype="PCM_16")
            written += 1
    return written


def generate(folder: str | Path, spec: SyntheticSpec = SyntheticSpec(),
             workers: int | None = None) -> Path:
    """Write the corpus into ``folder`` (created). Deterministic: the same spec gives the same
    bytes, whatever the number of workers."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(spec, index, str(folder)) for index in range(spec.speakers)]
    workers = min(workers or os.cpu_count() or 1, spec.speakers)
    if workers <= 1:
        list(map(_write_speaker, jobs))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_write_speaker, jobs))
    (folder / "spec.json").write_text(json.dumps(asdict(spec), indent=2))
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(cache_dir: str | Path) -> list[Path]:
    """Delete the temporary corpora that generations on this host left when their process died
    (a run stopped mid-generation leaves tens of MB otherwise, for ever); those of live
    processes, and of other hosts sharing the folder, are left alone. Returns what was
    removed."""
    prefix = f".tmp-{socket.gethostname()}-"
    removed = []
    for tmp in Path(cache_dir).glob(f"synthetic-*{prefix}*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def ensure_corpus(cache_dir: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """The corpus for ``spec`` under ``cache_dir``, generated on first use. A half-written
    corpus is never used: generation goes to a temporary folder (named by host and process)
    that is renamed when complete; those of dead processes are removed first."""
    target = Path(cache_dir) / f"synthetic-{spec.key()}"
    if (target / "spec.json").exists():
        return target
    if target.parent.is_dir():
        remove_stale_temporaries(target.parent)
    tmp = target.with_name(f"{target.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    generate(tmp, spec)
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target
