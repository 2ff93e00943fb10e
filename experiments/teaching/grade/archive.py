"""A class handed in as one zip archive (an LMS's "download all submissions"), unpacked
safely for ``discover``.

``unpacked(path)`` extracts the archive into a fresh private temporary folder and yields
(the folder to grade, the members left out with their reasons); the folder is removed
afterwards. What an archive may hold is limited as a security engineer would:

* a name is a relative path of ordinary parts: an absolute name, a drive letter, or a
  ``..`` part is refused (a "zip slip" would write outside the folder); ``\\`` counts as a
  separator (archives made on Windows);
* a symbolic link, a device or any other special member is left out, and so is an
  encrypted member and a second member of the same name: each is listed with its reason;
* at most ``MAX_MEMBERS`` members and ``MAX_BYTES`` bytes unpacked in all, counted as they
  are written (a declared size can lie; a "zip bomb" stops at the cap): a larger archive
  is refused in one line before anything is graded;
* an archive whose members all lie in one top folder is graded from inside that folder
  (the teacher zipped the submissions folder itself).

Files are written with mode 0600 in folders of mode 0700; nothing is executed or imported.
"""

from __future__ import annotations

import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from experiments.core.config import ConfigError
from experiments.teaching.grade.discover import NotGraded

MAX_MEMBERS = 20_000
MAX_BYTES = 1 << 30          # 1 GiB unpacked in all
_CHUNK = 1 << 20


def is_archive(path) -> bool:
    """Whether ``grade``'s DIR argument names a zip archive (a file ending in .zip)."""
    path = Path(path)
    return path.suffix.lower() == ".zip" and not path.is_dir()


def _parts(name: str) -> tuple[str, ...] | None:
    """The member's path parts, or None for a name that would leave the folder."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if any(p == ".." for p in parts):
        return None
    return parts


def _why_not(info: zipfile.ZipInfo) -> str | None:
    kind = stat.S_IFMT(info.external_attr >> 16)   # 0: no Unix file type recorded
    if info.flag_bits & 0x1:
        return "encrypted in the archive: not unpacked"
    if kind == stat.S_IFLNK:
        return "a symbolic link in the archive (never followed)"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "a special file in the archive (a device, FIFO or socket), not a regular file"
    return None


@contextmanager
def unpacked(path: Path) -> Iterator[tuple[Path, list[NotGraded]]]:
    """The archive at ``path`` unpacked (module docstring); bad archives raise
    ``ConfigError``."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        raise ConfigError(f"{path} cannot be read as a zip archive ({err}); give the "
                          f"archive as the LMS made it, or the folder it unpacks to") from None
    with archive, tempfile.TemporaryDirectory(prefix="handgrad-zip-") as tmp:
        root = Path(tmp) / "submissions"
        root.mkdir(mode=0o700)
        skipped = _extract(archive, path, root)
        tops = {p.name for p in root.iterdir()}
        inner = root / next(iter(tops)) if len(tops) == 1 else None
        if inner is not None and inner.is_dir() and not inner.is_symlink():
            prefix = f"{inner.name}/"
            skipped = [NotGraded(s.name.removeprefix(prefix), s.why) for s in skipped]
            yield inner, skipped
        else:
            yield root, skipped


def _extract(archive: zipfile.ZipFile, path: Path, root: Path) -> list[NotGraded]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ConfigError(f"{path} holds {len(infos)} members, more than a class's "
                          f"{MAX_MEMBERS}; unpack it yourself and grade the folder")
    skipped, seen, total = [], set(), 0
    for info in infos:
        parts = _parts(info.filename)
        shown = info.filename.replace("\\", "/")
        if parts is None:
            skipped.append(NotGraded(shown, "a name that leaves the archive's folder "
                                            "(absolute or with ..): not unpacked"))
            continue
        if not parts:
            continue
        why = _why_not(info)
        if why is None and parts in seen:
            why = "a second member of the same name in the archive: not unpacked"
        if why is not None:
            skipped.append(NotGraded("/".join(parts), why))
            continue
        seen.add(parts)
        target = root.joinpath(*parts)
        if info.is_dir():
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
            continue
        ancestors = [root.joinpath(*parts[:i]) for i in range(1, len(parts))]
        if target.exists() or any(a.exists() and not a.is_dir() for a in ancestors):
            skipped.append(NotGraded("/".join(parts), "a name that clashes with another "
                                                      "member of the archive: not unpacked"))
            continue
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            with archive.open(info) as src, open(target, "xb") as dst:
                target.chmod(0o600)
                while chunk := src.read(_CHUNK):
                    total += len(chunk)
                    if total > MAX_BYTES:
                        raise ConfigError(f"{path} unpacks to more than {MAX_BYTES >> 20} "
                                          f"MiB; unpack it yourself and grade the folder")
                    dst.write(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError,
                EOFError, zlib.error) as err:   # zlib.error: a corrupt deflate stream
            target.unlink(missing_ok=True)
            skipped.append(NotGraded("/".join(parts), f"unreadable in the archive ({err})"))
    return skipped
