from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import demos_folder, write_wav
from trainables.corpora import EmoDBCorpus, Utterance
from trainables.data import scan_corpus
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
    table = scan_corpus(ravdess, "ravdess")
    assert len(table) == 4 and set(table["emotion"]) == {"anger"}
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
