"""Where HEROVision may write, and what it may delete (DESIGN.md, "Data safety").

Every command that writes claims its output folder first, before any long work:

* a folder that does not exist is created, with a marker file naming the command;
* an existing folder is accepted only if that marker says the same command made it (a re-run,
  ``--resume``, another shard), or if it is empty; anything else is refused, saying why;
* the output may never be an input, lie inside one, or hold one (paths compared resolved, so
  symbolic links and ``..`` cannot hide an overlap).

Deleting or replacing goes through :func:`remove_within`, which checks at that moment, on resolved
paths, that the target lies inside the claimed folder. A run that fails leaves no empty folder of
its own behind (:func:`output_folder`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import InputError
from .images import user_umask

MARKER = ".herovision-output.json"


@dataclass(frozen=True)
class OutputFolder:
    """A claimed output folder: its resolved path, the command that owns it, and whether this run
    made it (``created``, with its missing parents from ``first_created`` down) or took an empty one
    (``adopted``)."""

    path: Path
    command: str
    created: bool = False
    adopted: bool = False
    first_created: Path | None = None


def _made_by(folder: Path) -> str | None:
    """The command named by ``folder``'s marker, or None when it has no readable marker."""
    marker = folder / MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        return str(json.loads(marker.read_text(encoding="utf-8"))["command"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def refuse_overlap(target: Path, inputs, shown) -> None:
    """Refuse a (resolved) output path that is, lies inside, or holds one of ``inputs``."""
    for item in inputs:
        if item is None:
            continue
        source = Path(item).expanduser().resolve()
        if target == source:
            raise InputError(shown, f"is the input {item}: outputs must go to a folder of their own")
        if source in target.parents:
            raise InputError(shown, f"lies inside the input {item}: outputs must go outside the inputs")
        if target in source.parents:
            raise InputError(shown, f"holds the input {item}: outputs must go to a folder of their own")


def claim_output_folder(folder, command: str, inputs=()) -> OutputFolder:
    """Claim ``folder`` for ``herovision <command>`` (module docstring); nothing else is touched."""
    shown = Path(folder)
    target = shown.expanduser().resolve()
    refuse_overlap(target, inputs, shown)
    if not target.exists():
        first = next(folder for folder in (*reversed(target.parents), target) if not folder.exists())
        target.parent.mkdir(parents=True, exist_ok=True)
        if _create_with_marker(target, command):
            return OutputFolder(target, command, created=True, first_created=first)
        # another process (a shard, a torchrun rank) made it a moment ago: judged below like any other
    if not target.is_dir():
        raise InputError(shown, "exists and is not a folder")
    owner = _made_by(target)
    if owner == command:
        return OutputFolder(target, command)
    if owner is not None:
        raise InputError(shown, f"was made by `herovision {owner}`, not `herovision {command}`: give another folder")
    if any(target.iterdir()):
        raise InputError(shown, f"exists and was not made by `herovision {command}` (it has no readable {MARKER}); "
                                "give a new folder: HEROVision never writes among files it did not make")
    _write_marker(target, command)
    return OutputFolder(target, command, adopted=True)


def _create_with_marker(target: Path, command: str) -> bool:
    """Make ``target`` with its marker in one step (a marked folder renamed into place), so another
    process never sees it unmarked; False when something took its place first."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".new", dir=target.parent))
    try:
        staging.chmod(0o777 & ~user_umask())
        _write_marker(staging, command)
        os.rename(staging, target)
        return True
    except OSError:
        return False
    finally:
        if staging.is_dir():  # made by this call, under a fresh name
            shutil.rmtree(staging)


def _write_marker(folder: Path, command: str) -> None:
    text = json.dumps({"command": command, "herovision": __version__}) + "\n"
    (folder / MARKER).write_text(text, encoding="utf-8")


def remove_within(path, folder: OutputFolder) -> None:
    """Delete ``path`` (file, link or folder) only if it lies inside the claimed ``folder``, checked
    now on resolved paths; a link is removed, never followed."""
    path = Path(path)
    parent = path.parent.resolve()
    if path.name in ("", ".", "..") or not (parent == folder.path or folder.path in parent.parents):
        raise InputError(path, f"refusing to delete: outside the output folder {folder.path}")
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def release_if_empty(folder: OutputFolder) -> None:
    """After a failed run: a folder this run made or adopted goes back to how it was when it holds
    nothing but the marker."""
    marker = folder.path / MARKER
    if not (folder.created or folder.adopted) or not folder.path.is_dir():
        return
    if any(p != marker for p in folder.path.iterdir()):
        return
    marker.unlink(missing_ok=True)
    if folder.created:  # rmdir removes only empty folders: nothing else can go
        for made in (folder.path, *folder.path.parents):
            try:
                made.rmdir()
            except OSError:  # something else appeared in it meanwhile: it stays
                break
            if made == folder.first_created:
                break


@contextmanager
def output_folder(folder, command: str, inputs=()):
    """:func:`claim_output_folder` for the length of a run; a failure leaves no empty folder behind."""
    claimed = claim_output_folder(folder, command, inputs)
    try:
        yield claimed
    except BaseException:
        release_if_empty(claimed)
        raise
