"""Atomic file writes: a reader, or the next run after a crash, sees the old file or the new one,
never a part of either.

The new content goes to a hidden temporary file beside the target (`.NAME.PID.RANDOM.tmp`, so
concurrent writers never share one), which is flushed and fsynced, renamed over the target with
`os.replace`, and the directory is fsynced so that the rename itself survives a power loss. A
writer killed before the rename leaves the target untouched and, at worst, its temporary file,
which nothing reads and the next write does not reuse.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable


def fsync_dir(directory: str | Path) -> None:
    """Make the entries of `directory` (files created, renamed or removed in it) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_with(path: str | Path, writer: Callable[[Path], Any]) -> None:
    """Atomically replace `path` with what `writer(temporary_path)` writes, for writers that take a
    file name (`torch.save`, `safetensors.torch.save_file`, `SharingPolicy.save`).

    If `writer` raises, the temporary file is removed and the error propagates; `path` is unchanged.
    """
    path = Path(path)
    tmp = _temporary(path)
    try:
        writer(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Atomically replace `path` with `data`."""

    def writer(tmp: Path) -> None:
        # O_EXCL: the name is new; mode 0o666 less the umask, as a plain open() would create it
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    write_with(path, writer)


def write_text(path: str | Path, text: str) -> None:
    """Atomically replace `path` with `text` (UTF-8)."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any, indent: int | None = 2, **dumps: Any) -> None:
    """Atomically replace `path` with `data` as JSON and a final newline (`dumps`: more `json.dumps`
    options, e.g. `default=str`)."""
    write_text(path, json.dumps(data, indent=indent, **dumps) + "\n")


def copy_tree(source: str | Path, target: str | Path) -> None:
    """Copy the directory `source` to `target`, which appears whole or not at all: the copy goes to a
    hidden temporary directory beside it and is renamed into place (`target` must not exist)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(target)
    try:
        shutil.copytree(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(target.parent)
