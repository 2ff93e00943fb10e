"""``handgrad grade CLASS.zip``: an LMS's "download all submissions" archive graded as it
comes, unpacked safely — a member that would leave the folder, a link, a duplicate, a
clash, an oversized or unreadable archive each refused or listed, nothing left behind."""

from __future__ import annotations

import stat
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main
from experiments.teaching.grade import archive

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "learners"
CORRECT = (EXAMPLES / "correct_w1b1.py").read_text(encoding="utf-8")
MEAN = (EXAMPLES / "mean_over_batch.py").read_text(encoding="utf-8")
FAST = ["--steps", "2", "--timeout", "20", "--memory", "400"]


def make_zip(path: Path, members: list[tuple]) -> Path:
    """members: (name, text) or (name, text, unix mode)."""
    with zipfile.ZipFile(path, "w") as z:
        for name, text, *mode in members:
            info = zipfile.ZipInfo(name)
            if mode:
                info.external_attr = mode[0] << 16
            z.writestr(info, text)
    return path


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's folder for this test alone: what the unpacking leaves behind shows."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


def left_behind(where: Path) -> list[str]:
    """The unpacked folders still there (torch keeps a cache of its own in tempdir)."""
    return [p.name for p in where.glob("handgrad-zip-*")]


def test_an_lms_zip_is_graded_as_its_folder_would_be(tmp_path, private_tmp, monkeypatch,
                                                      capsys):
    z = make_zip(tmp_path / "hw3 submissions.zip", [
        ("Ann Lee_101_assignsubmission_file_/hw3.py", CORRECT),
        ("bob_12_34_hw3.py", MEAN),
        ("../evil.py", CORRECT),                                   # a zip slip
        ("/abs.py", CORRECT),                                      # absolute
        ("C:\\\\win.py", CORRECT),                                 # a drive letter
        ("link.py", "/etc/passwd", stat.S_IFLNK | 0o777),          # a symbolic link
        ("bob_12_34_hw3.py", CORRECT),                             # a second of that name
        ("carl\\hw3.py", CORRECT),                                 # made on Windows
        ("dora", "x = 1\n"), ("dora/hw3.py", CORRECT),             # a file, then a folder
    ])
    monkeypatch.chdir(tmp_path)
    assert main(["grade", str(z), *FAST]) == 0
    out = tmp_path / "grades" / "hw3 submissions"                  # named after the archive
    table = pd.read_csv(out / "grades.csv", keep_default_na=False)
    assert list(zip(table["file"], table["student"], table["status"], strict=True)) == [
        ("Ann Lee_101_assignsubmission_file_/hw3.py", "Ann Lee", "agree"),
        ("bob_12_34_hw3.py", "bob", "differ"),
        ("carl/hw3.py", "carl", "agree")]
    why = dict(pd.read_csv(out / "not_graded.csv").itertuples(index=False))
    assert why["../evil.py"].startswith("a name that leaves the archive's folder")
    assert why["/abs.py"].startswith("a name that leaves the archive's folder")
    assert why["C://win.py"].startswith("a name that leaves the archive's folder")
    assert why["link.py"] == "a symbolic link in the archive (never followed)"
    assert why["bob_12_34_hw3.py"].startswith("a second member of the same name")
    assert why["dora/hw3.py"].startswith("a name that clashes with another member")
    assert why["dora"].startswith("not Python")                    # the file that won
    assert not (tmp_path.parent / "evil.py").exists() and not Path("/abs.py").exists()
    assert "# handgrad grade: " in (out / "grades.md").read_text(encoding="utf-8")
    assert left_behind(private_tmp) == []                        # nothing left behind
    capsys.readouterr()


def test_one_top_folder_is_graded_from_inside(tmp_path, private_tmp):
    z = make_zip(tmp_path / "class.zip", [("submissions/", ""),
                                          ("submissions/alice.py", CORRECT),
                                          ("submissions/bob.py", MEAN)])
    with archive.unpacked(z) as (root, skipped):
        assert sorted(p.name for p in root.iterdir()) == ["alice.py", "bob.py"]
        assert skipped == []
        assert stat.S_IMODE(root.joinpath("alice.py").stat().st_mode) == 0o600
    assert left_behind(private_tmp) == []


def test_a_zip_bomb_stops_at_the_cap(tmp_path, private_tmp, monkeypatch, capsys):
    monkeypatch.setattr(archive, "MAX_BYTES", 1 << 16)
    z = make_zip(tmp_path / "bomb.zip", [("a.py", CORRECT), ("big.py", "#" * (1 << 17))])
    assert main(["grade", str(z), *FAST, "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unpacks to more than 0 MiB" in err[0]
    assert not (tmp_path / "g").exists() and left_behind(private_tmp) == []


@pytest.mark.parametrize("content,words", [
    (b"not a zip at all", "cannot be read as a zip archive"),
    (None, "is not a file"),
])
def test_a_bad_archive_is_one_line(tmp_path, capsys, content, words):
    z = tmp_path / "class.zip"
    if content is not None:
        z.write_bytes(content)
    assert main(["grade", str(z), *FAST, "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "g").exists()


def test_too_many_members_are_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(archive, "MAX_MEMBERS", 3)
    z = make_zip(tmp_path / "many.zip", [(f"s{i}.py", CORRECT) for i in range(4)])
    assert main(["grade", str(z), *FAST, "--out", str(tmp_path / "g")]) == 2
    assert "holds 4 members, more than a class's 3" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_a_member_with_corrupt_compressed_data_is_listed_not_fatal(tmp_path, private_tmp):
    """A deflated member whose stream is corrupt (zlib.error, not an OSError) is one
    member left out with its reason; the others are unpacked."""
    z = tmp_path / "class.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("alice.py", CORRECT)
        out.writestr("bob.py", MEAN)
    data = bytearray(z.read_bytes())
    start = 30 + len("alice.py")          # alice's data follows her 30-byte local header
    data[start:start + 20] = bytes(b ^ 0xFF for b in data[start:start + 20])
    z.write_bytes(bytes(data))
    with archive.unpacked(z) as (root, skipped):
        assert [p.name for p in root.iterdir()] == ["bob.py"]
        assert [s.name for s in skipped] == ["alice.py"]
        assert "unreadable in the archive" in skipped[0].why
    assert left_behind(private_tmp) == []
