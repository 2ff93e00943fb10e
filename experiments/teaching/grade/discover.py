"""Which files of a submissions folder are graded, whose they are, and why the others are not.

``discover(folder)`` sorts every entry of the folder, without following links or running
anything, in two layouts that may be mixed:

* **a file directly in the folder** (a flat folder, or an LMS export of files) is one
  student's submission: a regular ``.py`` file or ``.ipynb`` notebook, in any letter case,
  hidden or not (``UPPER.PY``, ``.handgrad.py``). It has no helpers: every other file is a
  classmate's.
* **a folder directly in it** is one student's (Moodle's "in folders" download,
  Gradescope's, a course's zip): its whole tree is searched, and the submission is the
  ``.py`` or ``.ipynb`` file in it that defines ``gradients`` — a ``def``, an assignment or
  an import of that name at the top level, read from the syntax tree (a notebook's code
  cells read with nbformat, IPython's lines left out), never by running it. The other
  ``.py`` files of the submission's own folder are its helpers, importable by it alone. A
  folder with no such file, or with several different ones, is a row that says so (a
  folder with one Python file that defines nothing, or does not parse, has that file
  graded: its row says why it fails). Byte-identical candidates count once (the others are
  duplicates).

Every other entry is a "not graded" line with its reason: a link (never followed: it may
point at a device or out of the folder), a FIFO, socket or device, a file that is not
Python, a helper, a duplicate, Jupyter's checkpoints, compiled Python, macOS archive
metadata. Nothing is skipped silently.

The ``student`` column comes from the name of the file or folder: Canvas's download names
(``name_ID_ID_file.py``, late ones ``name_LATE_ID_ID_file.py``) give ``name``, Moodle's
(``Full Name_ID_assignsubmission_file_…``) give ``Full Name``; any other name is the
student itself (a flat file's name without its suffix). Each submission gets a folder name
for its check folder that is safe on any file system and unique in the class (``slot``).
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

SOURCES = (".py", ".ipynb")
#: folders made by tools, not by the student: never searched, listed once with the reason
TOOL_FOLDERS = {".ipynb_checkpoints": "duplicate: Jupyter's checkpoints (copies of the "
                                      "notebooks beside them)",
                "__pycache__": "not Python source: compiled Python (.pyc)",
                "__MACOSX": "not a submission: macOS archive metadata",
                ".git": "not a submission: a git repository's internals"}
CANVAS = re.compile(r"(?P<student>[A-Za-z0-9-]+?)_(?P<late>LATE_)?\d+_\d+_(?P<file>.+)")
MOODLE = re.compile(r"(?P<student>.+?)_\d+_assignsubmission_[a-z]+_(?P<file>.*)")
FOLDER_FILES = 2_000   # files searched in one student's folder at most


@dataclass(frozen=True)
class Submission:
    path: Path | None          # the file graded; None: the folder has no single candidate
    file: str                  # its path in the submissions folder (the folder's, if None)
    student: str               # from the LMS's name, the folder's, or the file's
    slot: str                  # its check folder's name, unique, safe
    helpers: tuple = ()        # the student's own other modules (a per-student folder)
    problem: str = ""          # why there is no submission to run (path is None)


@dataclass(frozen=True)
class NotGraded:
    name: str
    why: str


def shown(name: str) -> str:
    """A file name printable on one line: control characters escaped (a newline is ``\\n``)."""
    return name.encode("unicode_escape").decode("ascii") if not name.isprintable() else name


def student_of(name: str) -> str:
    """The student a file or folder name of an LMS download belongs to; any other name is
    its own student (without a ``.py``/``.ipynb`` suffix)."""
    for pattern in (MOODLE, CANVAS):
        m = pattern.fullmatch(name)
        if m is not None:
            return m.group("student")
    return re.sub(r"\.(py|ipynb)$", "", name, flags=re.IGNORECASE) or name


def marked_late(file: str) -> bool:
    """Whether the LMS marked the entry at ``file`` (its path in the submissions folder)
    late: Canvas names a late file ``name_LATE_ID_ID_file``."""
    return any((m := CANVAS.fullmatch(part)) is not None and m.group("late") is not None
               for part in Path(file).parts)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "file"


def classify(entry: Path, folders: bool = False) -> str | None:
    """Why ``entry`` is not a source file (or, with ``folders``, a folder), or None."""
    try:
        mode = entry.lstat().st_mode
    except OSError as err:
        return f"unreadable ({err.strerror})"
    kind = _kind(mode)
    if kind == "link":
        return "a symbolic link (never followed: it may lead out of the folder or to a device)"
    if kind == "folder":
        return None if folders else "a folder (its files are not graded)"
    if kind != "file":
        return f"a {kind}, not a regular file"
    if entry.suffix.lower() not in SOURCES:
        return "not Python: not a .py file or .ipynb notebook"
    return None


def _slot(name: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", re.sub(r"\.(py|ipynb)$", "", name,
                                                 flags=re.IGNORECASE)).lstrip(".") or "submission"
    slot, n = stem, 1
    while slot.lower() in taken:
        n += 1
        slot = f"{stem}-{n}"
    taken.add(slot.lower())
    return slot


def top_level_names(path: Path) -> set[str] | None:
    """The names a ``.py`` file or notebook binds at its top level, from its syntax tree
    (None: it cannot be read or parsed). Nothing of it runs."""
    from experiments.teaching.boundary.learner import LearnerError
    from experiments.teaching.boundary.notebook import notebook_cells
    from experiments.teaching.boundary.process import NOTEBOOK_LIMIT, read_capped

    notebook = path.suffix.lower() == ".ipynb"
    try:
        text = read_capped(path, NOTEBOOK_LIMIT if notebook else 4 << 20,
                           follow=False).decode("utf-8-sig")
        cells = notebook_cells(text, path.name)[0] if notebook else [("", text)]
    except (LearnerError, UnicodeDecodeError, ValueError):
        return None
    names, parsed = set(), False
    for _, source in cells:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        parsed = True
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names if parsed else None


def _digest(path: Path) -> str:
    from experiments.teaching.boundary.process import NOTEBOOK_LIMIT, read_capped
    try:
        return hashlib.sha256(read_capped(path, NOTEBOOK_LIMIT, follow=False)).hexdigest()
    except Exception:
        return str(path)   # unreadable: never a duplicate of another


def _walk(top: Path, rel: str, skipped: list[NotGraded]) -> list[Path]:
    """The regular ``.py``/``.ipynb`` files in ``top``'s tree (links never followed); every
    other entry goes to ``skipped``."""
    found: list[Path] = []
    for here, dirs, files in os.walk(top, followlinks=False):
        here_rel = Path(rel) / Path(here).relative_to(top)
        for d in sorted(dirs):
            why = TOOL_FOLDERS.get(d) or classify(Path(here) / d, folders=True)
            if why is not None:
                skipped.append(NotGraded(f"{here_rel / d}/", why))
        dirs[:] = sorted(d for d in dirs if d not in TOOL_FOLDERS
                         and classify(Path(here) / d, folders=True) is None)
        for f in sorted(files):
            why = classify(Path(here) / f)
            if why is not None:
                skipped.append(NotGraded(str(here_rel / f), why))
            elif len(found) >= FOLDER_FILES:
                skipped.append(NotGraded(str(here_rel / f), f"not searched: the folder holds "
                                         f"more than {FOLDER_FILES} Python files"))
            else:
                found.append(Path(here) / f)
    return found


def _student_folder(folder: Path, top: Path, taken: set[str],
                    skipped: list[NotGraded]) -> Submission:
    """The submission of one student's folder ``top`` (module docstring)."""
    rel = top.name
    student = student_of(rel)
    found: list[NotGraded] = []
    files = _walk(top, rel, found)
    if files or not found:   # a folder without Python files: its row says so, once
        skipped += found
    names = {p: top_level_names(p) for p in files}
    candidates = [p for p in files if names[p] is not None and "gradients" in names[p]]
    if not candidates and len(files) == 1:   # its row says why it fails
        candidates = files
    unique: dict[str, Path] = {}
    for p in sorted(candidates, key=lambda p: (len(p.name), str(p))):   # hw.py before hw (1).py
        first = unique.setdefault(_digest(p), p)
        if first is not p:
            skipped.append(NotGraded(str(p.relative_to(folder)),
                                     f"duplicate: the same bytes as {first.relative_to(folder)}"))
    files = [p for p in files if p not in candidates or p in unique.values()]
    candidates = sorted(unique.values())
    slot = _slot(student, taken)

    if len(candidates) == 1:
        sub = candidates[0]
        helpers = tuple(p for p in files if p.parent == sub.parent and p != sub
                        and p.suffix.lower() == ".py")
        for p in files:
            if p in helpers:
                skipped.append(NotGraded(str(p.relative_to(folder)),
                                         f"not a submission: a helper module of "
                                         f"{sub.relative_to(folder)} (importable by it alone)"))
            elif p != sub:
                skipped.append(NotGraded(str(p.relative_to(folder)), "not a submission: "
                                         "defines no gradients" + (
                                             "" if p.parent == sub.parent else
                                             " (and, in another folder than the "
                                             "submission's, is not its helper)")))
        return Submission(sub, str(sub.relative_to(folder)), student, slot, helpers)
    if not candidates:
        skipped += [NotGraded(str(p.relative_to(folder)), "not a submission: defines no "
                              "gradients") for p in files]
        others = (f" ({len(found)} other {'entry' if len(found) == 1 else 'entries'}, e.g. "
                  f"{shown(found[0].name)}: {found[0].why})" if found else "")
        problem = (f"{rel}/ holds no .py file or .ipynb notebook{others}" if not files else
                   f"none of the {len(files)} Python files in {rel}/ defines gradients "
                   f"({', '.join(p.name for p in files[:5])}"
                   f"{' ...' if len(files) > 5 else ''})")
    else:
        listed = ", ".join(str(p.relative_to(top)) for p in candidates[:5])
        problem = (f"{len(candidates)} files in {rel}/ define gradients ({listed}); keep "
                   f"the one to grade, or rename the others' function")
        for p in files:
            if p not in candidates:
                skipped.append(NotGraded(str(p.relative_to(folder)),
                                         "not a submission: defines no gradients"))
    return Submission(None, f"{rel}/", student, slot, problem=problem)


def discover(folder: Path) -> tuple[list[Submission], list[NotGraded]]:
    """The folder's submissions in name order, and every other entry with its reason."""
    subs, skipped, taken = [], [], set()
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name in TOOL_FOLDERS:
            skipped.append(NotGraded(f"{entry.name}/", TOOL_FOLDERS[entry.name]))
            continue
        why = classify(entry, folders=True)
        if why is not None:
            skipped.append(NotGraded(entry.name, why))
        elif entry.is_dir():
            subs.append(_student_folder(folder, entry, taken, skipped))
        else:
            subs.append(Submission(entry, entry.name, student_of(entry.name),
                                   _slot(entry.name, taken)))
    return subs, skipped
