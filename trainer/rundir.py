"""A run directory: the one way every command that writes one starts, resumes or refuses it (the
trainer, the Gumbel and conflict searches, bench builds and their entries, Tune's trials).

- `RunDir.open(cfg, resume)` decides: a new run refuses a directory that already holds one; `--resume`
  refuses a directory that holds none, and a config whose `fixed` keys differ from the saved one
  (naming the keys); `resume="auto"` (bench entries, a conflict search that reuses its measurements)
  resumes when the directory holds a run and starts one otherwise. Then it writes the resolved
  `config.yaml` (atomically, as every file of a run is written: `trainer.atomic`).
- `RunDir.lock()` holds an exclusive lock while a process writes the directory, so a second process
  started on it stops with the owner's pid instead of writing over it; the OS releases the lock of a
  process that dies.
- `RunDir.start_over()`: a retried attempt that failed before its first save clears what it left.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from trainer.typed_config import CONFIG_FILE, ConfigError, config_diff, dump_config, load_config

Resume = bool | Literal["auto"]
"""True: continue the run the directory holds (`--resume`); False: start a new one; "auto": either."""

LOCK_FILE = ".lock"


class RunDir:
    """The directory of one run of `what` ("run", "search", "bench", ...), named in its messages."""

    def __init__(self, path: str | Path, what: str = "run", markers: tuple[str, ...] = ("checkpoints",)) -> None:
        self.path, self.what = Path(path), what
        self.markers = markers
        """Entries besides config.yaml whose presence means the directory holds a run."""

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    def holds_run(self) -> bool:
        return self.config_file.exists() or any((self.path / marker).exists() for marker in self.markers)

    def check(self, cfg: Any, resume: Resume, fixed: tuple[str, ...] | None = None, need_config: bool = True) -> bool:
        """Whether the run continues (True) or starts (False) in this directory with `cfg`; a
        `ConfigError` naming the problem and the fix otherwise. `fixed`: the key prefixes a resumed run
        must keep (None: every key; (): none, for a caller that resolved the resumed config itself).
        Without `need_config`, a resumed run may also start from what was put there without a config (the
        trainer's: a bench's cool-down branch starts from a copy of its trunk's checkpoint)."""
        if resume == "auto":
            resume = self.config_file.is_file()
        if not resume:
            if self.holds_run():
                raise ConfigError(f"{self.path} already holds a {self.what}: pass --resume to continue it or choose another --out")
            return False
        if not need_config and not self.config_file.is_file():
            return True
        changed = [key for key in config_diff(self.saved(type(cfg)), cfg) if fixed is None or key.startswith(fixed)]
        if changed:
            raise ConfigError(
                f"{self.path} holds a {self.what} with another config ({', '.join(changed)} differ from {self.config_file}): "
                "continue it with its own settings, or choose another --out"
            )
        return True

    def saved(self, schema: type) -> Any:
        """The config (dataclass `schema`) of the run this directory holds, for `--resume`."""
        if not self.config_file.is_file():
            raise ConfigError(f"--resume: {self.path} holds no {self.what} to resume (no {CONFIG_FILE}); drop --resume to start one there")
        return load_config(self.config_file, schema)

    def write_config(self, cfg: Any) -> None:
        """Create the directory with the resolved config."""
        self.path.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, self.config_file)

    def open(self, cfg: Any, resume: Resume, fixed: tuple[str, ...] | None = None) -> bool:
        """`check`, then `write_config`; returns whether the run continues."""
        resuming = self.check(cfg, resume, fixed)
        self.write_config(cfg)
        return resuming

    def start_over(self) -> None:
        """Remove what an attempt left that never saved a state to continue from."""
        if self.path.exists():
            shutil.rmtree(self.path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the directory's exclusive lock (the file records the owner's pid) for the duration."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / LOCK_FILE, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                raise ConfigError(f"{self.path} is being written by {owner}; wait for it or stop it, then rerun") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
