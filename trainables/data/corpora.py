"""Corpus adapters: derive (speaker, gender, emotion) from an audio file's name.

Each adapter knows one corpus's file-name scheme and its class order. Adapters are registered by
name in ``CORPORA``; ``trainables.data.scan_corpus`` walks a folder and asks the adapter about
every audio file. The synthetic corpus is written in DEMoS layout, so it shares the DEMoS adapter.

Every corpus keeps the classes it shares with the paper's seven (``PAPER_CLASSES``), in the
paper's order, and leaves out its others (neutral, calm, boredom): such files raise ``Excluded``
with a reason, and the scan lists them with it instead of calling them bad.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from trainables.errors import DataError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")

# DEMoS's emotions, in the paper's class order; other corpora keep the ones they have.
PAPER_CLASSES = ("anger", "disgust", "fear", "guilt", "happiness", "sadness", "surprise")
NEUTRAL = "neutral (excluded, as in the paper)"
NOT_IN_PAPER = "(excluded: not one of the paper's seven classes)"


@dataclass(frozen=True)
class Utterance:
    """What a file name says about one recording."""

    speaker: str
    gender: str  # "f", "m" or "unknown"
    emotion: str  # English class name


class Excluded(Exception):
    """The file is recognised but deliberately left out (e.g. DEMoS neutral); ``str()`` is the
    reason that ``skipped_files.txt`` gives."""


class UnknownLabel(DataError):
    """The file follows the corpus's naming scheme but carries a label code we do not know."""


def paper_classes_in(emotions: set[str]) -> tuple[str, ...]:
    """The paper's classes that a corpus with ``emotions`` has, in the paper's order."""
    return tuple(c for c in PAPER_CLASSES if c in emotions)


def excluded_emotion(emotion: str) -> Excluded:
    """The exclusion of a class the seven-class setup leaves out, with its reason."""
    return Excluded(NEUTRAL if emotion == "neutral" else f"{emotion} {NOT_IN_PAPER}")


class CorpusAdapter:
    """Base class for file-name schemes. Subclasses set ``name``, ``classes`` and ``parse``."""

    name: ClassVar[str]
    classes: ClassVar[tuple[str, ...]]
    example: ClassVar[str]

    def parse(self, path: Path) -> Utterance | None:
        """Return the utterance, ``None`` if the name does not follow the scheme, or raise
        ``Excluded`` / ``UnknownLabel``."""
        raise NotImplementedError


class DemosCorpus(CorpusAdapter):
    """DEMoS (Parada-Cabaleiro et al.): ``PR_f_03_gio12a.wav``. Neutral (``neu``) is excluded,
    whether or not its name carries the ``PR_``/``NP_`` prefix (DEMoS ships it as
    ``NEU/f_03_neu01a.wav``); an emotional file without the prefix is misnamed."""

    name = "demos"
    classes = PAPER_CLASSES
    example = "PR_f_03_gio12a.wav"
    codes = {"rab": "anger", "dis": "disgust", "pau": "fear", "col": "guilt",
             "gio": "happiness", "tri": "sadness", "sor": "surprise"}
    pattern = re.compile(r"^(?:(PR|NP)_)?([fm])_(\d+)_([a-z]{3})\w*$", re.IGNORECASE)

    def parse(self, path: Path) -> Utterance | None:
        match = self.pattern.match(path.stem)
        if match is None:
            return None
        prefix, gender, speaker, code = match.groups()
        code = code.lower()
        if code == "neu":
            raise excluded_emotion("neutral")
        if prefix is None:
            return None
        if code not in self.codes:
            raise UnknownLabel(f"{path}: unknown DEMoS emotion code {code!r}; "
                               f"known codes: {', '.join(sorted(self.codes))} (neu is excluded)")
        gender = gender.lower()
        return Utterance(speaker=f"{gender}{int(speaker):02d}", gender=gender,
                         emotion=self.codes[code])


class EmoDBCorpus(CorpusAdapter):
    """Berlin EmoDB: ``03a01Fa.wav`` (speaker, text, emotion letter, version). Keeps anger,
    disgust, fear, happiness and sadness; boredom and neutral are excluded."""

    name = "emodb"
    example = "03a01Fa.wav"
    codes = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness",
             "T": "sadness", "N": "neutral"}
    classes = paper_classes_in(set(codes.values()))
    male_speakers = {"03", "10", "11", "12", "15"}
    pattern = re.compile(r"^(\d\d)([a-z]\d\d)([A-Z])([a-z]?)$")

    def parse(self, path: Path) -> Utterance | None:
        match = self.pattern.match(path.stem)
        if match is None:
            return None
        speaker, _, code, _ = match.groups()
        if code not in self.codes:
            raise UnknownLabel(f"{path}: unknown EmoDB emotion letter {code!r}; "
                               f"known: {', '.join(sorted(self.codes))}")
        emotion = self.codes[code]
        if emotion not in self.classes:
            raise excluded_emotion(emotion)
        gender = "m" if speaker in self.male_speakers else "f"
        return Utterance(speaker=speaker, gender=gender, emotion=emotion)


class RavdessCorpus(CorpusAdapter):
    """RAVDESS speech: ``03-01-06-01-02-01-12.wav``. Keeps anger, disgust, fear, happiness,
    sadness and surprise; neutral, calm and song files (vocal channel 02) are excluded."""

    name = "ravdess"
    example = "03-01-06-01-02-01-12.wav"
    # The file name's emotion code, 01 to 08, in RAVDESS's order.
    emotions = ("neutral", "calm", "happiness", "sadness", "anger", "fear", "disgust", "surprise")
    classes = paper_classes_in(set(emotions))
    pattern = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")

    def parse(self, path: Path) -> Utterance | None:
        match = self.pattern.match(path.stem)
        if match is None:
            return None
        _, channel, code, _, _, _, actor = match.groups()
        if channel != "01":
            raise Excluded("song (excluded: speech only)")
        index = int(code) - 1
        if not 0 <= index < len(self.emotions):
            raise UnknownLabel(f"{path}: unknown RAVDESS emotion code {code!r}; known: 01-08")
        emotion = self.emotions[index]
        if emotion not in self.classes:
            raise excluded_emotion(emotion)
        gender = "m" if int(actor) % 2 == 1 else "f"
        return Utterance(speaker=actor, gender=gender, emotion=emotion)


class CremaDCorpus(CorpusAdapter):
    """CREMA-D: ``1001_DFA_ANG_XX.wav``. Gender comes from ``VideoDemographics.csv`` beside or above
    the audio when present, else it is ``unknown`` (the split then has one stratum). Keeps anger,
    disgust, fear, happiness and sadness; neutral is excluded."""

    name = "crema-d"
    example = "1001_DFA_ANG_XX.wav"
    codes = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happiness",
             "NEU": "neutral", "SAD": "sadness"}
    classes = paper_classes_in(set(codes.values()))
    pattern = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})$")

    def __init__(self, genders: dict[str, str] | None = None) -> None:
        self.genders = genders or {}

    def parse(self, path: Path) -> Utterance | None:
        match = self.pattern.match(path.stem)
        if match is None:
            return None
        actor, _, code, _ = match.groups()
        if code not in self.codes:
            raise UnknownLabel(f"{path}: unknown CREMA-D emotion code {code!r}; "
                               f"known: {', '.join(sorted(self.codes))}")
        emotion = self.codes[code]
        if emotion not in self.classes:
            raise excluded_emotion(emotion)
        return Utterance(speaker=actor, gender=self.genders.get(actor, "unknown"), emotion=emotion)


CORPORA: dict[str, type[CorpusAdapter]] = {
    cls.name: cls for cls in (DemosCorpus, EmoDBCorpus, RavdessCorpus, CremaDCorpus)
}
# Kinds the CLI accepts: the file-name schemes above, our generated corpus (DEMoS layout) and a CSV.
CORPUS_KINDS = ("synthetic", *CORPORA, "manifest")
