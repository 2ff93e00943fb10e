"""Which entries of a submissions folder are graded, and why the others are not.

``discover(folder)`` looks at every entry of the folder (not its subfolders' contents)
without following links or opening anything, and sorts each into a submission (a
regular ``.py`` file or ``.ipynb`` notebook, in any letter case, hidden or not:
``UPPER.PY``, ``.handgrad.py``) or a "not graded" line with its reason: a link (never
followed: it may point at a device or out of the folder), a FIFO, socket or device, a
folder, a file that is neither. Nothing is skipped silently. Each submission gets a
folder name for its check folder that is safe on any file system and unique in the class
(``slot``).
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Submission:
    path: Path     # the file in the submissions folder
    slot: str      # its check folder's name, unique, safe


@dataclass(frozen=True)
class NotGraded:
    name: str
    why: str


def shown(name: str) -> str:
    """A file name printable on one line: control characters escaped (a newline is ``\\n``)."""
    return name.encode("unicode_escape").decode("ascii") if not name.isprintable() else name


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


def classify(entry: Path) -> str | None:
    """Why ``entry`` is not a submission, or None when it is one."""
    try:
        mode = entry.lstat().st_mode
    except OSError as err:
        return f"unreadable ({err.strerror})"
    kind = _kind(mode)
    if kind == "link":
        return "a symbolic link (never followed: it may lead out of the folder or to a device)"
    if kind == "folder":
        return "a folder (its files are not graded)"
    if kind != "file":
        return f"a {kind}, not a regular file"
    if entry.suffix.lower() not in (".py", ".ipynb"):
        return "not a Python file (.py) or notebook (.ipynb)"
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


def discover(folder: Path) -> tuple[list[Submission], list[NotGraded]]:
    """The folder's submissions in name order, and every other entry with its reason."""
    subs, skipped, taken = [], [], set()
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        why = classify(entry)
        if why is None:
            subs.append(Submission(entry, _slot(entry.name, taken)))
        else:
            skipped.append(NotGraded(entry.name, why))
    return subs, skipped
