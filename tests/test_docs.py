"""The docs run as written: every shell command shown in README.md and docs/ is run, in a
fresh copy of the repository, in the order a newcomer reads them (the README, then the
pages in the order its "Where to read next" lists them), and every `handgrad ...` the docs
name — in a code block or inline — is a command with options that exist.

What runs. Each ```bash block is one shell session (a `cd` or variable carries to the
block's later lines, not to the next block), started in the copy's root, with the test's
own environment first on PATH (its `handgrad` and `python`). `handgrad` there is served by
one warm process that has imported torch once (tests/doc_zygote.py): forty fresh imports
would cost minutes. Each command's exit status is checked as the docs promise it; with
DOC_TIMES=FILE each command's wall time is appended to FILE (about 6 minutes in all on 2
busy cores). Folders the docs write
(runs/, sweeps/, checks/, bench/ ...) are therefore shared across blocks, as they are for
a reader: a later example that collides with an earlier one's output fails here.

How it stays honest and still fits CI's 10 minutes on 2 cores. A few commands are not run
as written; each is listed below with its reason, and the test fails if a listed command
no longer appears in the docs (a stale entry cannot hide a new command):

- ``NOT_RUN``: installs (pip, network) and the test command itself (``.ci/run`` runs
  exactly it; checked below), and what needs CUDA where there is none.
- ``SHORTENED``: a long command run with arguments *appended* (fewer steps or repeats;
  argparse and ``--set`` take the last value), so the command, every option as written and
  the code path run; only the size shrinks. Checked: the run line starts with the doc line.
- ``STAND_IN``: two commands whose point is their minutes (re-running every reference
  experiment, 6,000 random networks) run a stand-in that the entry describes.

The docs also assume two files of the reader's own (``GIVEN``), which the test writes
first. A command's exit status must be 0, or what ``EXIT`` says the docs promise.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import doc_zygote as zygote
import pytest

from experiments.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent          # the environment the tests run in

#: install lines and the test command: .ci/run runs the test command (asserted below);
#: running pytest inside pytest would recurse
NOT_RUN = {
    "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e '.[test]' && "
    ".venv/bin/ruff check . && .venv/bin/python -m pytest -n 2":
        "the test command: .ci/run runs it",
    "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 --index-url "
    "https://download.pytorch.org/whl/cpu": "an install (network)",
}
NEEDS_CUDA = {
    "handgrad bench --device cuda --dtype float32 --out bench-gpu   # on a CUDA machine",
    "OUT=gpu-check bash benchmarks/gpu_check.sh",
}

#: doc line -> the arguments appended to it. The main seed run is shortened too: its full
#: 10,000 steps and printed predictions are tests/test_cli.py's
#: test_seed_run_prints_the_seed_scripts_predictions.
SHORTENED = {
    "handgrad run seed --set mode=synced --set log_every=1 --out runs/seed-synced   # every "
    "step, at the same weights": "--set epochs=200",
    "handgrad run seed --set dtype=float32 --out runs/seed32": "--set epochs=1000",
    "handgrad bench --quick                          # one training step vs the GEMM floor "
    "(about a minute)": "--case worked-2-2-2 --repeats 1",
    "handgrad bench --quick --out bench-quick   # 2-2-2 … 1024-1024-1024, float32 + float64: "
    "about a minute": "--case worked-2-2-2 --repeats 1",
    "handgrad bench --force        # adds 2048 units; 9 repeats (about 5 minutes on 2 cores)":
        "--case worked-2-2-2 --repeats 1",
    "python benchmarks/runner_overhead.py          # --steps 10000 --repeats 3 by default":
        "--steps 100 --repeats 1",
    "python benchmarks/check_overhead.py --steps 2000 --repeats 3": "--steps 20 --repeats 1",
    "python benchmarks/time_to_verdict.py --repeats 3": "--repeats 1 --steps 2 --no-plots",
    '/usr/bin/time -f "%M KiB" handgrad run seed --set epochs=100000 --out r100k --quiet':
        "--set epochs=100",
    "handgrad explain seed --format html --out seed.html --steps 20": "--steps 2",
    "handgrad run digits                             # 64-30-10 sigmoid net, mini-batch SGD":
        "--set epochs=2",
    "handgrad grade submissions/ seed --out grades/week3 --timeout 20 --steps 200 --jobs 2 "
    "--force":
        "--steps 5",
    "handgrad check my_backprop.py seed                          # exit 0 agree, 1 differ":
        "--steps 20",
    "handgrad grade submissions/ seed --out grades/week3 --jobs 2  # a class: a row per "
    "student":
        "--steps 5",
    "handgrad check examples/learners/correct_w1b1.py                 # the seed case "
    "(default)": "--steps 20",
    "handgrad check examples/learners/missing_factor_2.py seed --set loss=mse": "--steps 20",
    "handgrad check examples/learners/transposed_weight_gradient.py   # a learner's mistake, "
    "diagnosed (exit 1)": "--steps 20",
    "handgrad check my_backprop.py xor --steps 200 --out checks/my_backprop-xor": "--steps 5",
    "handgrad explain --param w1 --steps 10000": "--steps 3",
    "handgrad bugs                                   # six classic derivation bugs and their "
    "signatures": "--steps 3",
    "handgrad bugs --force          # (re)writes bugs/, as the README's tour did": "--steps 3",
    "handgrad sweep seed --grid lr=0.5,1.0 --set epochs=100 --jobs 2": "--set epochs=5",
    "handgrad sweep seed --grid lr=0.5,1.0 --set epochs=100 --backend dask --jobs 2 --out "
    "sweeps/seed-dask": "--set epochs=5",
    "handgrad grade submissions/ seed --out grades/week3-dask --backend dask --jobs 2":
        "--steps 5",
    "handgrad sweep seed --grid lr=0.5,1.0 --grid dtype=float32,float64 --set epochs=100 "
    "--jobs 2 --out sweeps/seed-dtype": "--set epochs=5",
    "handgrad explain --format html --out runs/explain.html   # the same, clickable, in a "
    "browser": "--steps 2",
    "handgrad explain --format html --out explain.html                # the 2-2-2 worked "
    "example": "--steps 2",
    "handgrad explain digits --format html --out digits.html --param 'layers.1.weight[3,7]'":
        "--steps 2",
}
#: comments after a shortened line would swallow the appended arguments: they go first
_COMMENT = re.compile(r"\s+#[^'\"]*$")

#: doc command -> (what runs instead, why)
STAND_IN = {
    "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e . && .venv/bin/handgrad "
    "run seed":
        ("handgrad run seed --set epochs=1000",
         "the install is what this test's environment did; its last command, the main "
         "job, runs 1,000 of its 10,000 steps (the tour below reads runs/seed)"),
    "python -m experiments.tools.regenerate --out regenerated breast-cancer digits "
    "float32-drift iris seed worked-2-2-2 xor":
        ("python -m experiments.tools.regenerate --out regenerated xor && "
         "cp -r results/breast-cancer results/digits results/float32-drift results/iris "
         "results/seed results/worked-2-2-2 regenerated/",
         "regenerating the seven reference runs takes minutes: xor is regenerated, the "
         "others are the committed results/ (the same code's output)"),
    "settings(max_examples=6000, derandomize=True, deadline=None, database=None)"
    "(given(t.random_problems())(check))()":
        ("settings(max_examples=30, derandomize=True, deadline=None, database=None)"
         "(given(t.random_problems())(check))()",
         "6,000 random networks take minutes; 30 run the same code"),
}

#: files the docs ask the reader to write: (what the test puts there). The class is six
#: of examples/learners: a correct file and a correct notebook (agree), two mistakes
#: (differ), a file for another config (wrong_assignment) and an import error
#: (import_error). The docs grade it three times, and all 32 examples cost a minute of CI
#: (tests/test_near_miss.py checks each of them on its own)
GIVEN = {
    "my_backprop.py": "examples/learners/correct_torch.py",    # any depth, biases or not
    "submissions": [f"examples/learners/{name}" for name in (
        "correct_torch.py", "correct_notebook.ipynb", "mean_over_batch.py",
        "transposed_weight_gradient.py", "written_for_biases.py", "module_level_test.py")],
}

#: doc command -> the exit status the docs promise for it
EXIT = {
    "handgrad check examples/learners/transposed_weight_gradient.py   # a learner's mistake, "
    "diagnosed (exit 1)": 1,
    "handgrad check examples/learners/missing_factor_2.py seed --set loss=mse": 1,
    "handgrad check examples/assignments/makemore/bessel_missing.py "
    "examples/assignments/makemore/reference.py   # exit 1": 1,
}


def reading_order() -> list[Path]:
    """README.md, then docs/*.md in the order README's "Where to read next" links them
    (then any page it does not link, by name)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^- \[docs/([\w.-]+\.md)\]", readme, re.M)
    rest = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name not in listed)
    return [ROOT / "README.md", *[ROOT / "docs" / n for n in listed + rest]]


def bash_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, body) of every ```bash block."""
    return [(text[:m.start()].count("\n") + 2, m.group(1))
            for m in re.finditer(r"^```bash\n(.*?)^```", text, re.M | re.S)]


def commands(body: str) -> list[str]:
    """A block's commands: its lines, a line whose quotes are open joined with the next
    (``python -c "..."`` over several lines)."""
    out, pending = [], ""
    for line in body.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:                      # an open quote: the command goes on
            continue
        if shlex.split(pending, comments=True):     # not a blank or comment-only line
            out.append(pending)
        pending = ""
    assert not pending, f"unterminated command: {pending!r}"
    return out


def as_run(command: str) -> tuple[str | None, str]:
    """(the shell text to run, or None; why it differs from the doc, '' if it does not)."""
    if command in NOT_RUN:
        return None, NOT_RUN[command]
    if command in NEEDS_CUDA:
        import torch
        if not torch.cuda.is_available():
            return None, "needs CUDA; none here"
        return command, ""
    if command in SHORTENED:
        head = _COMMENT.sub("", command)
        return f"{head} {SHORTENED[command]}", f"shortened: {SHORTENED[command]} appended"
    for doc, (instead, why) in STAND_IN.items():
        if doc in command:
            return command.replace(doc, instead), why
    return command, ""


def script(blocks: list[tuple[str, str]]) -> str:
    """One bash script per block, each line checked for its exit status; the first failure
    names the doc, the line and the command."""
    lines = ["cd \"$ROOT_COPY\""]
    for where, command in blocks:
        run, _ = as_run(command)
        if run is None:
            continue
        want = EXIT.get(command, 0)
        lines += ["t0=$EPOCHREALTIME", run,
                  f"rc=$?; if [ $rc -ne {want} ]; then echo {shlex.quote(where)}: exit "
                  f"\"$rc\" not {want}: {shlex.quote(command)} >&2; exit 1; fi",
                  # how long each doc command took, for keeping this test within CI's time
                  f'[ -z "$DOC_TIMES" ] || echo "$t0 $EPOCHREALTIME {shlex.quote(where)} "'
                  f'{shlex.quote(command.splitlines()[0][:70])} >> "$DOC_TIMES"']
    return "\n".join(lines) + "\n"


def doc_sessions() -> list[tuple[str, list[tuple[str, str]]]]:
    """Every bash block of the docs in reading order: (doc:line, [(doc:line, command)])."""
    sessions = []
    for path in reading_order():
        text = path.read_text(encoding="utf-8")
        for line, body in bash_blocks(text):
            where = f"{path.relative_to(ROOT)}:{line}"
            sessions.append((where, [(where, c) for c in commands(body)]))
    return sessions


def fresh_copy(dest: Path) -> Path:
    """The repository's files as a clone has them (tracked and new files, not ignored
    ones: no runs/, no .venv), plus the reader's own files the docs assume."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    for name, source in GIVEN.items():
        if isinstance(source, list):                # a folder of these files
            (dest / name).mkdir()
            for file in source:
                shutil.copy2(ROOT / file, dest / name / Path(file).name)
        else:
            shutil.copy2(ROOT / source, dest / name)
    return dest


@contextlib.contextmanager
def warm_handgrad(folder: Path):
    """A folder holding a ``handgrad`` served by one warm process (tests/doc_zygote.py):
    each command then starts in milliseconds instead of re-importing torch."""
    sock = str(folder / "zygote.sock")
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "doc_zygote.py"), sock],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready", "the warm handgrad did not start"
        zygote.write_shim(folder, sock)
        yield folder
    finally:
        server.kill()
        server.wait()


def run_sessions(sessions, root: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    shims = root.parent / "bin"
    shims.mkdir(exist_ok=True)
    with warm_handgrad(shims):
        env = {**os.environ, "PATH": os.pathsep.join([str(shims), str(BIN), os.environ["PATH"]]),
               "ROOT_COPY": str(root), "MPLBACKEND": "Agg"}
        body = "".join(f"(\n{script(cmds)})\nrc=$?; [ $rc -eq 0 ] || exit $rc\n"
                       for _, cmds in sessions)
        return subprocess.run(["bash", "-c", body], cwd=root, env=env, capture_output=True,
                              text=True, timeout=timeout)


# -- the tables stay true ------------------------------------------------------------------

def test_every_listed_exception_is_still_in_the_docs():
    shown = {c for _, cmds in doc_sessions() for _, c in cmds}
    every = "\n".join(shown)
    for table in (NOT_RUN, NEEDS_CUDA, SHORTENED, EXIT):
        for command in table:
            assert command in shown, f"no doc shows {command!r} any more: drop it here"
    for doc in STAND_IN:
        assert doc in every, f"no doc shows {doc!r} any more: drop it here"


def test_the_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ("python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 -e '.[test]' \\\n"
            "  && .venv/bin/ruff check . && .venv/bin/python -m pytest") in ci


# -- names -----------------------------------------------------------------------------------

def _parsers():
    parser = build_parser()
    return {name: sub for name, sub in parser.commands.items()}


def _options(sub) -> set[str]:
    return {o for a in sub._actions for o in a.option_strings}


def named_commands(text: str) -> list[tuple[str, str]]:
    """Every ``handgrad WORD ...`` in inline code or a code block: (WORD, the rest of it,
    up to the end of the span or line)."""
    spans = re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
    inline = re.sub(r"```.*?```", "", text, flags=re.S)
    spans += re.findall(r"`([^`\n]+)`", inline)
    found = []
    for span in spans:
        for line in span.splitlines():
            for m in re.finditer(r"(?<![\w/.-])handgrad ([a-z][\w-]*)(.*)", line):
                found.append((m.group(1), m.group(2).split("|handgrad")[0]))
    return found


def unknown_names(text: str) -> list[str]:
    parsers = _parsers()
    bad = []
    for word, rest in named_commands(text):
        if word not in parsers:
            bad.append(f"handgrad {word}: no such command")
            continue
        rest = re.split(r"\s#\s|\s+#\S", rest)[0]         # not the comment after it
        for opt in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest):
            if opt not in _options(parsers[word]):
                bad.append(f"handgrad {word} {opt}: no such option")
    return bad


def test_docs_name_only_commands_and_options_that_exist():
    for path in reading_order():
        bad = unknown_names(path.read_text(encoding="utf-8"))
        assert not bad, f"{path.relative_to(ROOT)}: {'; '.join(bad)}"


def test_a_wrong_name_is_caught():
    text = "Run `handgrad study learning-rate` or `handgrad run seed --epochs 3`.\n"
    assert unknown_names(text) == ["handgrad study: no such command",
                                   "handgrad run --epochs: no such option"]


# -- every command runs ------------------------------------------------------------------------

def test_a_planted_wrong_command_fails(tmp_path):
    """The runner itself: a doc block with a command that fails stops the run and names
    its doc and line."""
    block = "handgrad list\nhandgrad run no-such-experiment --quiet\nhandgrad list\n"
    cmds = [("planted.md:3", c) for c in commands(block)]
    proc = run_sessions([("planted.md:3", cmds)], tmp_path, timeout=120)
    assert proc.returncode == 1
    assert "planted.md:3: exit 2 not 0: handgrad run no-such-experiment --quiet" in proc.stderr
    assert proc.stdout.count("studies (several runs") == 1      # stopped at the failure


def test_commands_join_open_quotes():
    body = 'handgrad list\npython -c "\nprint(1)\nprint(2)"\n# a comment\n'
    assert commands(body) == ["handgrad list", 'python -c "\nprint(1)\nprint(2)"']


@pytest.mark.slow
def test_every_doc_command_runs_in_doc_order(tmp_path):
    sessions = doc_sessions()
    root = fresh_copy(tmp_path / "clone")
    proc = run_sessions(sessions, root)
    failed = [line for line in proc.stderr.splitlines() if re.search(r": exit \S+ not \d+: ",
                                                                       line)]
    assert proc.returncode == 0, "\n".join([*failed, proc.stderr[-3000:]])
