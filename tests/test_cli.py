"""The ``handgrad`` command end to end: in-process through ``experiments.cli.main`` (capsys),
and through real subprocesses (``python -m experiments``, the console script).

Runs are tiny (``--set epochs=2``) except the one full seed run, which checks the printed
predictions against the seed script itself.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from seed_script import run_seed_script

from experiments.cli import EXIT_BAD_INPUT, EXIT_DIVERGED, main
from experiments.core.config import load_config, named_experiments

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMED = sorted(named_experiments())
TINY = ["--set", "epochs=2"]


def handgrad(*args: str) -> int:
    return main([str(a) for a in args])


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("handgrad: error: "), err
    assert "Traceback" not in err
    return lines[0]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000, path


# -- run ---------------------------------------------------------------------------------

def test_run_in_process(tmp_path, capsys):
    out = tmp_path / "seed2"
    assert handgrad("run", "seed", *TINY, "--out", out, "--no-plots") == 0
    stdout = capsys.readouterr().out
    assert "Verdict over 2 logged steps (float64, mode free)" in stdout
    assert re.search(r"^layers\.0\.weight .* (exact|agree)$", stdout, re.M), stdout
    assert re.search(r"^ +all .* (exact|agree)$", stdout, re.M), stdout
    assert stdout.rstrip().endswith(f"completed: 2 steps completed; run directory {out}")
    for name in ("config.toml", "provenance.json", "loss.csv", "grads.csv", "summary.csv",
                 "report.md"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.png"))                          # --no-plots
    assert load_config(str(out / "config.toml")).epochs == 2    # the override was recorded


def test_run_quiet_keeps_the_verdict(tmp_path, capsys):
    """--quiet drops the bar, predictions and table; the verdict and status lines stay."""
    out = tmp_path / "q"
    assert handgrad("run", "seed", *TINY, "--out", out, "--no-plots", "--quiet") == 0
    captured = capsys.readouterr()
    verdict, status = captured.out.splitlines()
    assert re.fullmatch(r"verdict: (exact|agree) over 2 logged steps \(worst rel_err \S+ = "
                        r"\S+·rel_tol at step \d+; worst \|E_manual - E_torch\| \S+\)",
                        verdict), verdict
    assert status == f"completed: 2 steps completed; run directory {out}"
    assert captured.err == ""                                   # no progress bar


def test_progress_bar_only_on_a_terminal_or_on_request(tmp_path, capsys):
    """pytest's captured stderr is not a terminal, as `2>&1 > log` or a notebook's `!` cell
    is not: no bar, and stdout starts with the table's first line. --progress draws it."""
    assert handgrad("run", "seed", *TINY, "--out", tmp_path / "a", "--no-plots") == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.startswith("Last forward pass")
    assert handgrad("run", "seed", *TINY, "--out", tmp_path / "b", "--no-plots",
                    "--progress") == 0
    assert "step" in capsys.readouterr().err                    # tqdm's "2/2 [... step/s]"
    with pytest.raises(SystemExit) as exit_:
        handgrad("run", "seed", "--quiet", "--progress")
    assert exit_.value.code == EXIT_BAD_INPUT
    assert "not allowed with argument" in one_error_line(capsys.readouterr().err)


def test_a_study_prints_its_lesson(tmp_path, capsys, monkeypatch):
    """`handgrad run STUDY` prints the report's "What one sees" findings, then where the
    report is (the study itself is stubbed: tests/test_studies.py runs them)."""
    import shutil

    import experiments.teaching.studies as studies
    committed = Path(__file__).parents[1] / "results" / "learning-rate"

    def fake_run_study(name, out, **kwargs):
        shutil.copytree(committed, out)
        return Path(out)
    monkeypatch.setattr(studies, "run_study", fake_run_study)
    out = tmp_path / "lr"
    assert handgrad("run", "learning-rate", "--quick", "--out", out) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("- Linear output: "), printed
    assert printed[-1] == f"study written: {out / 'report.md'}"
    assert all(len(line) <= 100 and line.startswith(("- ", "  ")) for line in printed[:-1])
    assert handgrad("run", "learning-rate", "--quick", "--out", tmp_path / "q", "--quiet") == 0
    assert capsys.readouterr().out == f"study written: {tmp_path / 'q' / 'report.md'}\n"


def test_run_default_out_is_runs_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert handgrad("run", "seed", *TINY, "--no-plots", "--quiet") == 0
    assert (tmp_path / "runs" / "seed" / "loss.csv").is_file()


def test_run_force_replaces(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / ".handgrad").write_text("handgrad run\n")   # an earlier handgrad output
    (out / "old.txt").write_text("old", encoding="utf-8")
    assert handgrad("run", "seed", *TINY, "--out", out, "--no-plots", "--quiet",
                    "--force") == 0
    assert not (out / "old.txt").exists() and (out / "loss.csv").is_file()


def test_run_subprocess(tmp_path):
    out = tmp_path / "sub"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments", "run", "seed", "--set", "epochs=2",
         "--out", str(out), "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("verdict: ")
    assert proc.stdout.endswith(f"\ncompleted: 2 steps completed; run directory {out}\n")
    assert proc.stderr == ""                  # a pipe is no terminal: no progress bar
    for name in ("loss.csv", "grads.csv", "summary.csv", "report.md", "loss.png"):
        assert (out / name).is_file(), name
    assert_png(out / "loss.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]    # nothing else written


def test_bad_input_subprocess(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments", "run", "sed"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_BAD_INPUT
    line = one_error_line(proc.stderr)
    assert "did you mean 'seed'" in line
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []                           # no runs/ folder


def test_console_script_list():
    # `pip install -e .` (README: Set-up) puts the console script next to the interpreter
    script = Path(sys.executable).parent / "handgrad"
    assert script.is_file(), f"console script not installed next to {sys.executable}"
    proc = subprocess.run([str(script), "list"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    experiments_block = proc.stdout.split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in experiments_block[::2]] == NAMED


# -- the seed script, reproduced ------------------------------------------------------------

@pytest.mark.slow
def test_seed_run_prints_the_seed_scripts_predictions(tmp_path, capsys):
    # the original script's print of its last forward pass (tests/seed_script.py)
    want = run_seed_script()[0]
    assert handgrad("run", "seed", "--out", tmp_path / "seed", "--no-plots") == 0
    stdout = capsys.readouterr().out
    m = re.search(r"Last forward pass \(at step 9999[^\n]*\nmanual:\n(.*?)\ntorch:\n(.*?)\n\n",
                  stdout, re.S)
    assert m, stdout
    # numpy's default print (8 significant digits): the two sides' last forward passes
    # differ from the script's by float64 rounding (~1e-16), far below the printed digits.
    assert m.group(1) == want
    assert m.group(2) == want


# -- list -----------------------------------------------------------------------------------

def test_list(capsys):
    assert handgrad("list") == 0
    experiments_block, studies_block = capsys.readouterr().out.split("\n\n")
    lines = experiments_block.splitlines()[::2]      # each name's line, then its network's
    assert [line.split()[0] for line in lines] == NAMED
    assert all(ln.split()[0] == "network" for ln in experiments_block.splitlines()[1::2])
    from experiments.teaching.studies import STUDIES
    assert [line.split()[0] for line in studies_block.splitlines()[1:]] == list(STUDIES)
    for line, name in zip(lines, NAMED, strict=True):
        description = line[len(name):].strip()
        assert description, f"{name}: no description"
        first_words = " ".join(load_config(name).description.split()[:3])
        assert description.startswith(first_words), line


# -- plot -----------------------------------------------------------------------------------

def test_plot_redraws(tmp_path, capsys):
    out = tmp_path / "r"
    assert handgrad("run", "seed", *TINY, "--out", out, "--no-plots", "--quiet") == 0
    capsys.readouterr()
    assert handgrad("plot", out) == 0
    printed = [Path(p) for p in capsys.readouterr().out.split()]
    assert printed and all(p.parent == out for p in printed)
    assert {p.name for p in printed} >= {"loss.png", "grad_diff.png"}
    assert sorted(printed) == sorted(out.glob("*.png"))
    for p in printed:
        assert_png(p)


def test_plot_of_a_non_run_dir(tmp_path, capsys):
    assert handgrad("plot", tmp_path) == EXIT_BAD_INPUT
    line = one_error_line(capsys.readouterr().err)
    assert "is not a complete handgrad run directory" in line


# -- compare --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def float32_and_64_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    for dtype in ("float32", "float64"):
        assert handgrad("run", "seed", *TINY, "--set", f"dtype={dtype}", "--out",
                        root / dtype, "--no-plots", "--quiet") == 0
    return root / "float32", root / "float64"


def test_compare(float32_and_64_runs, capsys):
    a, b = float32_and_64_runs
    capsys.readouterr()
    assert handgrad("compare", a, b) == 0
    stdout = capsys.readouterr().out
    assert str(a) in stdout and str(b) in stdout
    assert "dtype" in stdout                                    # the config difference
    table = [line for line in stdout.splitlines() if line.startswith("|")]
    assert len(table) >= 2 + 3                                  # header, rule, 2 params + all
    assert any("layers.0.weight" in line for line in table)
    assert any(line.startswith("| all ") for line in table)
    out = a.parent / f"compare-{a.name}-vs-{b.name}"            # the documented default
    pngs = sorted(out.glob("*.png"))
    assert pngs
    for p in pngs:
        assert_png(p)
        assert str(p) in stdout


def test_compare_out(float32_and_64_runs, tmp_path, capsys):
    a, b = float32_and_64_runs
    assert handgrad("compare", a, b, "--out", tmp_path / "cmp") == 0
    assert list((tmp_path / "cmp").glob("*.png"))


def test_compare_needs_run_dirs(float32_and_64_runs, tmp_path, capsys):
    a, _ = float32_and_64_runs
    assert handgrad("compare", a, tmp_path / "missing") == EXIT_BAD_INPUT
    line = one_error_line(capsys.readouterr().err)
    assert "missing is not a complete handgrad run directory" in line


# -- help -----------------------------------------------------------------------------------

COMMANDS = ["run", "list", "plot", "compare", "explain", "bugs", "sweep", "bench", "check",
            "grade"]


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)],
                         ids=["handgrad", *COMMANDS])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: handgrad {' '.join(command)}".rstrip())
    if not command:
        for sub in COMMANDS:
            assert re.search(rf"^\s+{sub}\s+\S", text, re.M), sub     # each with its help


def in_fresh_python(*lines: str) -> subprocess.CompletedProcess:
    """Run ``lines`` in a new interpreter (nothing imported yet, its own stdout)."""
    return subprocess.run([sys.executable, "-c", "\n".join(lines)], capture_output=True,
                          text=True, timeout=120)


def test_help_and_list_start_without_torch():
    """Only the module of the command being run is imported: `handgrad --help` and
    `handgrad list` never load torch, pandas or seaborn (seconds on a loaded machine)."""
    proc = in_fresh_python(
        "import sys, contextlib, io",
        "from experiments.cli import main",
        "for argv in (['--help'], ['list']):",   # --help exits: one block each
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):",
        "        print(main(argv), file=sys.stderr)",
        "print(sorted(m for m in ('torch', 'pandas', 'seaborn') if m in sys.modules))")
    assert proc.returncode == 0 and proc.stderr == "0\n", proc.stderr   # list ran, exit 0
    assert proc.stdout.strip() == "[]"


def test_explain_and_plot_import_only_what_they_need(tmp_path):
    """`explain` (text) needs torch for autograd but not matplotlib/seaborn (the diagram,
    --figure, imports them); `plot` draws from CSVs and needs no torch (docs/performance.md
    has both start-ups next to the import floor)."""
    run = tmp_path / "r"
    assert main(["run", "seed", *TINY, "--out", str(run), "--no-plots", "--quiet"]) == 0
    proc = in_fresh_python(
        "import sys, contextlib, io",
        "from experiments.cli import main",
        "with contextlib.redirect_stdout(io.StringIO()):",
        "    assert main(['explain', '--param', 'w1']) == 0",
        "print(sorted(m for m in ('matplotlib', 'seaborn', 'scipy') if m in sys.modules))")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
    proc = in_fresh_python(
        "import sys, contextlib, io",
        "from experiments.cli import main",
        "with contextlib.redirect_stdout(io.StringIO()):",
        f"    assert main(['plot', {str(run)!r}]) == 0",
        "print(sorted(m for m in ('torch', 'torch_impl') if m in sys.modules))")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


@pytest.mark.parametrize("argv, words", [
    (["explain", "--steps", "abc"], "--steps: invalid int value: 'abc'"),
    (["check", "x.py", "--steps", "abc"], "--steps: invalid int value"),
    (["sweep", "seed", "--jobs", "x"], "--jobs: invalid int value"),
    (["run", "seed", "--threads", "x"], "--threads: expected a whole number >= 1"),
    (["explain", "--format", "pdf"], "invalid choice: 'pdf'"),
    (["nosuch"], "invalid choice: 'nosuch'"),
    (["run"], "the following arguments are required"),
    (["bench", "--frce"], "unrecognized arguments: --frce; see `handgrad bench --help`"),
    (["run", "seed", "--for"], "unrecognized arguments: --for; see `handgrad run --help`"),
])
def test_argparse_errors_are_one_line_too(argv, words, capsys):
    """What argparse itself refuses reads like every other bad input: one line, exit 2."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("handgrad: error: ") and words in err, err
    assert err.rstrip().endswith("--help`")


def test_an_abbreviated_option_is_not_taken_for_a_longer_one(tmp_path, capsys):
    """`--for` is not `--force` (which deletes): options are spelled out."""
    out = tmp_path / "r"
    assert handgrad("run", "seed", "--set", "steps=2", "--out", out, "--quiet") == 0
    with pytest.raises(SystemExit):
        main(["run", "seed", "--set", "steps=2", "--out", str(out), "--for"])
    assert "unrecognized arguments: --for" in capsys.readouterr().err


def test_a_study_typo_with_quick_suggests_the_study(capsys):
    assert handgrad("run", "sparse-featurs", "--quick") == EXIT_BAD_INPUT
    assert "did you mean the study 'sparse-features'" in one_error_line(capsys.readouterr().err)


def test_a_closed_pipe_stops_quietly():
    """`handgrad list | head -1`: the reader has gone, so handgrad stops as Unix tools do,
    with no error line (BrokenPipeError is an OSError, which the CLI otherwise reports)."""
    proc = in_fresh_python(
        "import os, sys",
        "r, w = os.pipe()",
        "os.close(r)",
        "sys.stdout = open(w, 'w', buffering=1)",
        "from experiments.cli import main",
        "print(main(['list']), file=sys.stderr)")
    assert proc.stderr == "1\n"


def test_the_command_run_gets_its_full_parser(capsys):
    """A placeholder never stands in for the command being run: its own options parse."""
    with pytest.raises(SystemExit) as exit_:
        main(["bugs", "--help"])
    assert exit_.value.code == 0
    assert "--sizes" in capsys.readouterr().out


def test_run_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())     # undo argparse's line wrapping
    for option, default in [("--set KEY=VALUE", "[]"), ("--force", "False"),
                            ("--no-plots", "False"), ("--quiet", "False")]:
        assert re.search(rf"{re.escape(option)} .*?\(default: {re.escape(default)}\)", text), \
            option
    assert "runs/NAME" in text                           # --out's effective default


def test_compare_help_shows_default_out(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "compare-A-vs-B next to RUN_A" in text


@pytest.mark.parametrize("command", ["run", "compare"])
def test_help_does_not_contradict_itself(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "(default: None)" not in capsys.readouterr().out


# -- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "expect"), [
    (["run", "sed"], "unknown experiment 'sed': did you mean 'seed'?"),
    (["run", "nope.toml"], "nope.toml does not exist"),
    (["run", "seed", "--set", "lrr=0.1"], "unknown config key 'lrr'"),
    (["run", "seed", "--set", "lr"], "expected key=value"),
    (["run", "seed", "--set", "epochs=1.5"], "epochs = 1.5"),
    (["run", "seed", "--set", "lr=-1"], "lr = -1.0"),
    (["run", "seed", "--set", "dataset=nope"], "unknown dataset 'nope'"),
    (["run", "seed", "--set", "sizes=[2,4,1]"], "do not fit dataset 'seed'"),
    (["run", "seed", "--set", "batch_size=5"], "batch_size = 5 is larger than"),
])
def test_bad_input_is_one_line_and_writes_nothing(args, expect, tmp_path, capsys,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)            # the default out (runs/NAME) would land here
    assert handgrad(*args) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert expect in line, line
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []


def test_unknown_set_key_suggests(tmp_path, capsys):
    assert handgrad("run", "seed", "--set", "momentun=0.9", "--out", tmp_path / "x") == 2
    assert "did you mean 'momentum'" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "x").exists()


def test_existing_out_without_force(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "mine.txt").write_text("keep", encoding="utf-8")
    assert handgrad("run", "seed", *TINY, "--out", out) == EXIT_BAD_INPUT
    line = one_error_line(capsys.readouterr().err)
    assert f"run directory {out} already exists" in line and "--force" in line
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # numpy overflow on the way to inf
def test_divergence_exit_code(tmp_path, capsys):
    out = tmp_path / "div"
    code = handgrad("run", "seed", "--set", "steps=50", "--set", "lr=1e6", "--set",
                    "activation=identity", "--set", "log_every=10", "--out", out,
                    "--no-plots", "--quiet")
    assert code == EXIT_DIVERGED
    captured = capsys.readouterr()
    assert re.fullmatch(r"handgrad: diverged at step \d+: .*\n", captured.err), captured.err
    verdict, status = captured.out.splitlines()    # the logged steps before it agreed
    assert verdict.startswith("verdict: agree over ")
    assert status.startswith("diverged: diverged at step")
    assert (out / "loss.csv").is_file() and (out / "report.md").is_file()


def test_bce_on_a_forward_pass_that_overflowed_is_divergence(tmp_path, capsys):
    """Finite weights (1e300 after one step) whose identity hidden layer overflows to
    inf − inf = NaN: torch.nn.BCELoss raises on NaN outputs; that is divergence (exit 3),
    not a traceback. Found by the property test in test_reliability."""
    code = handgrad("run", "worked-2-2-2", "--set", "hidden=[3]", "--set",
                    "activation=identity", "--set", "output_activation=\"sigmoid\"", "--set",
                    "loss=bce", "--set", "bias=true", "--set", "init=legacy-rand", "--set",
                    "lr=1e300", "--set", "steps=2",
                    "--set", "log_every=1", "--set", "mode=free", "--out", tmp_path / "r",
                    "--no-plots", "--quiet")
    assert code == EXIT_DIVERGED
    assert re.fullmatch(r"handgrad: diverged at step 1: .*\n", capsys.readouterr().err)


# -- bad input found in review: one line, exit 2, nothing written ----------------------------

def _bad(capsys, *args) -> str:
    assert handgrad(*args) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return one_error_line(captured.err)


def test_out_under_a_file_is_refused_before_running(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    line = _bad(capsys, "run", "seed", "--set", "epochs=2", "--out", str(blocker / "sub"))
    assert "cannot create run directory" in line


def test_legacy_init_seed_out_of_numpy_range(tmp_path, capsys):
    line = _bad(capsys, "run", "seed", "--set", "seed=4294967296", "--out", str(tmp_path / "D"))
    assert "legacy-rand" in line and "2**32" in line
    assert not (tmp_path / "D").exists()


def test_corrupt_npz_init_file(tmp_path, capsys):
    bad = tmp_path / "w.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    line = _bad(capsys, "run", "seed", "--set", f"init={bad}", "--out", str(tmp_path / "D"))
    assert str(bad) in line


def test_plot_of_a_run_dir_with_a_broken_csv(tmp_path, capsys):
    for name in ("loss.csv", "grads.csv", "summary.csv"):
        (tmp_path / name).write_text("")
    line = _bad(capsys, "plot", str(tmp_path))
    assert "EmptyDataError" in line or "loss.csv" in line


def test_quick_is_for_studies_only(tmp_path, capsys):
    line = _bad(capsys, "run", "seed", "--quick", "--out", str(tmp_path / "D"))
    assert "--quick applies to studies only" in line


def test_study_name_typo_suggests_the_study(capsys):
    assert "did you mean the study 'batch-modes'" in _bad(capsys, "run", "batch_modes")
