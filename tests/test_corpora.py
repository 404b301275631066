import re
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import demos_folder, demos_with_neutral, write_wav
from trainables.data.corpora import (CORPORA, NEUTRAL, CremaDCorpus, EmoDBCorpus, Excluded,
                                RavdessCorpus, Utterance)
from trainables.data.scan import scan_corpus
from trainables.errors import DataError


def test_demos_names_speakers_genders_and_english_emotions(tmp_path):
    demos_folder(tmp_path / "others")
    write_wav(tmp_path / "sub" / "PR_f_03_gio12a.wav")
    write_wav(tmp_path / "NP_m_19_rab08b.wav")
    write_wav(tmp_path / "neutral" / "PR_m_19_neu01a.wav")  # excluded, as in the paper
    write_wav(tmp_path / "PR_m_20_tri01a.wav")
    table = scan_corpus(tmp_path, "demos")
    rows = {Path(p).name: r for p, r in zip(table["path"], table.to_dict("records"))}
    assert {"PR_f_03_gio12a.wav", "NP_m_19_rab08b.wav", "PR_m_20_tri01a.wav"} <= set(rows)
    assert not any("neu" in name for name in rows)
    assert rows["PR_f_03_gio12a.wav"]["emotion"] == "happiness"
    assert rows["PR_f_03_gio12a.wav"]["gender"] == "f"
    assert rows["NP_m_19_rab08b.wav"]["emotion"] == "anger"
    assert rows["NP_m_19_rab08b.wav"]["label"] == 0
    assert table.attrs["classes"][4] == "happiness"


def test_scan_corpus_columns_and_split_values(tmp_path):
    table = scan_corpus(demos_folder(tmp_path), "demos")
    assert {"path", "speaker", "gender", "emotion", "split"} <= set(table.columns)
    assert set(table["split"]) == {"train", "dev", "test"}


def test_other_corpora_file_name_schemes(tmp_path):
    emodb = EmoDBCorpus()
    assert emodb.parse(Path("03a01Wa.wav")) == Utterance("03", "m", "anger")
    assert emodb.parse(Path("08a01Fa.wav")) == Utterance("08", "f", "happiness")
    assert emodb.parse(Path("hello.wav")) is None
    ravdess = tmp_path / "ravdess"
    for actor in (1, 2, 3, 4):
        write_wav(ravdess / f"03-01-05-01-02-01-{actor:02d}.wav")
    write_wav(ravdess / "03-02-05-01-02-01-01.wav")  # song: excluded
    calm = write_wav(ravdess / "03-01-02-01-02-01-01.wav")
    table = scan_corpus(ravdess, "ravdess")
    assert len(table) == 4 and set(table["emotion"]) == {"anger"}
    assert (str(calm), "calm (excluded: not one of the paper's seven classes)") in \
        table.attrs["excluded"] and len(table.attrs["excluded"]) == 2
    assert dict(zip(table["speaker"], table["gender"]))["01"] == "m"
    crema = tmp_path / "crema"
    for actor in (1001, 1002, 1003):
        write_wav(crema / f"{actor}_DFA_HAP_XX.wav")
    assert set(scan_corpus(crema, "crema-d")["emotion"]) == {"happiness"}


def test_manifest_with_its_own_split(tmp_path):
    rows = []
    for i, split in enumerate(["train", "dev", "test"]):
        path = write_wav(tmp_path / f"a{i}.wav")
        rows.append({"path": path.name, "speaker": f"s{i}", "emotion": "calm", "split": split})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    table = scan_corpus(tmp_path, "manifest")
    assert list(table["split"]) == ["train", "dev", "test"]
    assert Path(table["path"][0]).is_absolute()


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: p, "holds no audio files"),
    (lambda p: write_wav(p / "hello.wav").parent, "no file in"),
    (lambda p: write_wav(p / "PR_f_03_xyz12a.wav").parent, "unknown DEMoS emotion code 'xyz'"),
])
def test_bad_corpus_folders_name_the_problem(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        scan_corpus(make(tmp_path), "demos")


def test_unknown_code_names_the_file_and_skip_lists_it(tmp_path):
    demos_folder(tmp_path)
    bad = write_wav(tmp_path / "PR_f_01_xyz01a.wav")
    with pytest.raises(DataError, match="PR_f_01_xyz01a.wav"):
        scan_corpus(tmp_path, "demos")
    table = scan_corpus(tmp_path, "demos", on_bad_file="skip")
    assert str(bad) not in set(table["path"])
    assert [p for p, _ in table.attrs["skipped"]] == [str(bad)]


def test_unknown_corpus_kind_is_an_error(tmp_path):
    with pytest.raises(DataError, match="allowed: synthetic"):
        scan_corpus(demos_folder(tmp_path), "timit")


def test_demos_neutral_recordings_are_left_out_and_listed_with_the_reason(tmp_path):
    neutral = demos_with_neutral(tmp_path)
    table = scan_corpus(tmp_path, "demos")
    assert not set(map(str, neutral)) & set(table["path"])
    assert len(table) == 6 * 7 and "neutral" not in set(table["emotion"])
    assert sorted(table.attrs["excluded"]) == sorted((str(p), NEUTRAL) for p in neutral)
    assert NEUTRAL == "neutral (excluded, as in the paper)"
    assert table.attrs["skipped"] == []


@pytest.mark.parametrize("name", ["f_03_gio01a.wav", "recording1.wav", "PR_x_03_gio01a.wav"])
def test_a_misnamed_file_beside_the_neutral_ones_still_stops_the_scan(tmp_path, name):
    """An emotional file without the prefix is misnamed: the prefix may be missing only from
    neutral recordings. The message counts and names the misnamed file alone."""
    demos_with_neutral(tmp_path)
    write_wav(tmp_path / "NEU" / name)
    with pytest.raises(DataError, match=rf"^1 audio file\(s\) .* are not named as demos names "
                                        rf"its files .*: {name}; "):
        scan_corpus(tmp_path, "demos")
    table = scan_corpus(tmp_path, "demos", on_bad_file="skip")
    assert table.attrs["skipped"] == [(str(tmp_path / "NEU" / name), "unrecognised file name")]
    assert len(table.attrs["excluded"]) == 3


def test_a_tree_of_neutral_recordings_only_says_so(tmp_path):
    write_wav(tmp_path / "NEU" / "f_01_neu01a.wav")
    with pytest.raises(DataError, match=r"all 1 audio files are left out, .*f_01_neu01a.wav: "
                                        + re.escape(NEUTRAL)):
        scan_corpus(tmp_path, "demos")


@pytest.mark.parametrize("adapter, name, reason", [
    (EmoDBCorpus(), "03a01Na.wav", NEUTRAL),
    (EmoDBCorpus(), "03a01La.wav", "boredom (excluded: not one of the paper's seven classes)"),
    (RavdessCorpus(), "03-01-01-01-01-01-01.wav", NEUTRAL),
    (RavdessCorpus(), "03-01-02-01-01-01-01.wav",
     "calm (excluded: not one of the paper's seven classes)"),
    (RavdessCorpus(), "03-02-05-01-01-01-01.wav", "song (excluded: speech only)"),
    (CremaDCorpus(), "1001_DFA_NEU_XX.wav", NEUTRAL),
])
def test_other_corpora_exclude_the_classes_outside_the_papers_seven(adapter, name, reason):
    with pytest.raises(Excluded, match=re.escape(reason)):
        adapter.parse(Path(name))


def test_every_corpus_keeps_the_papers_classes_it_has_in_the_papers_order():
    paper = ("anger", "disgust", "fear", "guilt", "happiness", "sadness", "surprise")
    assert CORPORA["demos"].classes == paper
    assert CORPORA["emodb"].classes == ("anger", "disgust", "fear", "happiness", "sadness")
    assert CORPORA["ravdess"].classes == ("anger", "disgust", "fear", "happiness", "sadness",
                                          "surprise")
    assert CORPORA["crema-d"].classes == ("anger", "disgust", "fear", "happiness", "sadness")
    assert RavdessCorpus().parse(Path("03-01-08-01-01-01-02.wav")) == Utterance("02", "f",
                                                                                "surprise")

