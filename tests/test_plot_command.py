"""``handgrad plot DIR`` on every kind of output folder: the figures come back from the CSVs
alone (each PNG is deleted first), and a folder it cannot plot gets one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAKE = {   # kind -> the command that writes such a folder quickly, and the figures it has
    "run": (["run", "seed", "--set", "steps=3", "--quiet"],
            ["grad_diff.png", "grad_entry.png", "grad_heatmap.png", "loss.png",
             "weight_drift.png"]),
    "study": (["run", "batch-modes", "--quick", "--quiet"], ["batch_modes.png"]),
    "bugs": (["bugs", "--steps", "2"], ["bugs.png"]),
    "sweep": (["sweep", "seed", "--grid", "lr=0.5,1.0", "--set", "epochs=2"], ["sweep.png"]),
}


@pytest.mark.parametrize("kind", list(MAKE))
def test_plot_redraws_every_kind_of_folder(kind, tmp_path, capsys):
    args, figures = MAKE[kind]
    out = tmp_path / kind
    assert main([*args, "--out", str(out)]) == 0
    for png in out.glob("*.png"):
        png.unlink()
    capsys.readouterr()
    assert main(["plot", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == figures
    for name in figures:
        assert (out / name).read_bytes().startswith(PNG_MAGIC), name


def test_plot_refuses_a_folder_it_cannot_plot(tmp_path, capsys):
    (tmp_path / "config.toml").write_text('kind = "thesis"\n')
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "kind 'thesis'" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["plot", str(empty)]) == 2
    assert "not a complete handgrad run directory" in capsys.readouterr().err
