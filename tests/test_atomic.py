"""Atomic writes: a writer killed in the middle of a write leaves the old file intact, and what it
leaves behind does not stop the next write."""
from __future__ import annotations

import ast
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from trainer import atomic

ROOT = Path(__file__).resolve().parents[1]

# Each child starts a write of NEW over the target, says "inside" on stdout once it is in the middle
# of it, then blocks reading stdin (never written) until the test kills it.
BLOCK = "sys.stdout.write('inside\\n'); sys.stdout.flush(); sys.stdin.read()"
CHILDREN = {
    # torn: the callback has written half of the new content
    "write_with, half written": f"""
import sys
from trainer import atomic
def writer(tmp):
    with open(tmp, "wb") as handle:
        handle.write(NEW[: len(NEW) // 2])
    {BLOCK}
atomic.write_with(TARGET, writer)
""",
    # complete but not yet renamed: blocked in the helper's fsync of the temporary file
    "write_text, in the fsync": f"""
import os, sys
from trainer import atomic
def fsync(fd):
    {BLOCK}
os.fsync = fsync
atomic.write_text(TARGET, NEW.decode())
""",
    # torch.save streaming into the temporary file, killed after its first chunk
    "torch.save, mid-stream": f"""
import sys, torch
from trainer import atomic
class Stalls:
    def __init__(self, path):
        self.handle = open(path, "wb")
    def write(self, data):
        self.handle.write(data)
        self.handle.flush()
        {BLOCK}
    def flush(self):
        self.handle.flush()
atomic.write_with(TARGET, lambda tmp: torch.save({{"new": torch.ones(100_000)}}, Stalls(tmp)))
""",
}


def kill_mid_write(target: Path, new: bytes, child: str) -> None:
    """Run `child` writing `new` over `target`, SIGKILL it once it reports being inside the write."""
    code = f"TARGET = {str(target)!r}\nNEW = {new!r}\n{child}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        line = proc.stdout.readline()  # the pipe, not a timer, says when the child is inside the write
        assert line == b"inside\n", f"the writer ended before the kill: {proc.communicate()[1].decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


@pytest.mark.parametrize("child", list(CHILDREN))
def test_a_writer_killed_mid_write_leaves_the_old_file_and_the_next_write_works(tmp_path, child):
    target = tmp_path / "state.bin"
    old, new = b"old content\n" * 100, b"new content\n" * 100
    target.write_bytes(old)

    kill_mid_write(target, new, CHILDREN[child])

    assert target.read_bytes() == old
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".state.bin.") and leftovers[0].suffix == ".tmp"
    assert leftovers[0].stat().st_size > 0  # killed with part of the new content written, beside the target

    atomic.write_bytes(target, new)  # the next write is not stopped by what the killed one left
    assert target.read_bytes() == new
    atomic.write_json(target, {"then": [1, 2]})
    assert json.loads(target.read_text()) == {"then": [1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, leftovers[0].name])


def test_the_file_is_fsynced_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic.write_text(tmp_path / "a.txt", "x")
    assert len(events) == 3
    (kind, name), rename, synced_dir = events
    assert kind == "fsync" and name.startswith(".a.txt.") and name.endswith(".tmp")
    assert rename == ("replace", "a.txt") and synced_dir == ("fsync", "dir")


def test_a_writer_that_raises_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "weights.safetensors"
    target.write_bytes(b"old")

    def fails(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic.write_with(target, fails)
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("site", ["save_weights", "write_search_state"])
def test_the_supernet_weights_and_search_state_are_written_through_the_helper(tmp_path, monkeypatch, site):
    """A failure after the new bytes are written but before they are in place (here: the fsync)
    leaves the previous file, which a write in place would already have overwritten."""
    import torch
    from safetensors.torch import load_file

    from nas.supernet import rundir

    target = tmp_path / "file"
    torch.manual_seed(0)
    old, new = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    write = {"save_weights": lambda m: rundir.save_weights(m, target), "write_search_state": lambda m: rundir.write_search_state(target, m.state_dict())}[site]
    read = {"save_weights": lambda: load_file(str(target)), "write_search_state": lambda: torch.load(target, weights_only=True)}[site]
    write(old)

    def dies(fd: int) -> None:
        raise OSError("killed")

    monkeypatch.setattr(os, "fsync", dies)
    with contextlib.suppress(OSError):
        write(new)
    assert torch.equal(read()["weight"], old.weight.detach()) and list(tmp_path.iterdir()) == [target]


def test_written_files_get_the_mode_a_plain_write_gives(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic.write_text(tmp_path / "atomic.txt", "x")
    assert stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def renames_and_fsyncs(path: Path) -> list[str]:
    """`os.replace` / `os.rename` / `os.fsync` calls and pathlib's `p.replace(q)` / `p.rename(q)`
    (one argument, no keywords: not `str.replace(a, b)`, `dataclasses.replace(x, k=v)` or
    `DataFrame.rename(columns=...)`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, owner = node.func.attr, node.func.value
        if isinstance(owner, ast.Name) and owner.id == "os" and name in ("replace", "rename", "fsync"):
            found.append(f"os.{name}")
        elif name in ("replace", "rename") and len(node.args) == 1 and not node.keywords and not isinstance(node.args[0], ast.Constant):
            found.append(f"path.{name}")
    return sorted(set(found))


def test_the_helper_is_the_only_hand_written_atomic_write():
    """No module renames files into place or fsyncs on its own; the checkpoint's directory swap is
    the one rename of whole directories."""
    found = {str(p.relative_to(ROOT)): renames_and_fsyncs(p) for folder in ("trainer", "nas", "scripts") for p in (ROOT / folder).rglob("*.py")}
    assert {k: v for k, v in found.items() if v} == {"trainer/atomic.py": ["os.fsync", "os.replace"], "trainer/checkpoint.py": ["os.replace"]}
