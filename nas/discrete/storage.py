"""Optuna storages from a URL, with heartbeats, plus a per-study lock that makes claiming trials exact.

URLs: `sqlite:///FILE` (one worker, or a few on one host), `postgresql+psycopg2://USER@HOST:PORT/DB`
(parallel workers on any hosts; `scripts/postgres.sh` starts one locally) and `journal:FILE`
(Optuna's journal file, parallel workers on one host or a shared file system). SQLite and
PostgreSQL storages record heartbeats: a trial whose worker died is marked FAIL and queued again.

The lock: Optuna has no atomic "count the trials, then start one", so two workers could both see
a budget of N-1 trials and start one each, or both enqueue the baselines. `StudyLock` serialises
those short steps (a PostgreSQL advisory lock, or `flock` on a file next to the SQLite database or
journal); it is held while a trial is claimed and its relative parameters are proposed, never
during training, and a killed worker's lock goes away with its process (or its connection).
"""
from __future__ import annotations

import abc
import contextlib
import fcntl
import hashlib
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend

from trainer.typed_config import ConfigError

JOURNAL_PREFIX = "journal:"
LOCK_SUFFIX = ".sharenas-lock"
SCHEMA_LOCK = "<optuna tables>"


class StorageError(ConfigError):
    """A storage URL that cannot be used; the message names the URL and the fix."""


class StudyLock(abc.ABC):
    """An exclusive lock per study; a context manager that releases only if still held."""

    @property
    @abc.abstractmethod
    def held(self) -> bool: ...

    @abc.abstractmethod
    def acquire(self) -> None: ...

    @abc.abstractmethod
    def release(self) -> None: ...

    def __enter__(self) -> "StudyLock":
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.held:
            self.release()


class FileLock(StudyLock):
    """An exclusive `flock` on `path` (same host only; released by the kernel if the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        self._file = handle

    def release(self) -> None:
        assert self._file is not None, "release() without acquire()"
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None


class PostgresAdvisoryLock(StudyLock):
    """A session-level `pg_advisory_lock` keyed by the study name (released if the connection drops)."""

    def __init__(self, url: str, name: str) -> None:
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        self._engine = sqlalchemy.create_engine(url, poolclass=NullPool)
        digest = hashlib.sha1(f"sharenas-study:{name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self._conn = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def acquire(self) -> None:
        import sqlalchemy

        conn = self._engine.connect()
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
        conn.commit()
        self._conn = conn

    def release(self) -> None:
        import sqlalchemy

        assert self._conn is not None, "release() without acquire()"
        self._conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
        self._conn.close()
        self._conn = None


@dataclass
class StorageHandle:
    """An opened storage: pass `storage` to Optuna; `lock(study)` for claiming trials."""

    url: str
    storage: BaseStorage
    heartbeat: bool

    @property
    def display_url(self) -> str:
        return display_url(self.url)

    def lock(self, study_name: str) -> StudyLock:
        if self.url.startswith(JOURNAL_PREFIX):
            return FileLock(Path(self.url[len(JOURNAL_PREFIX):] + LOCK_SUFFIX))
        if self.url.startswith("sqlite:///"):
            return FileLock(Path(self.url[len("sqlite:///"):] + LOCK_SUFFIX))
        return PostgresAdvisoryLock(self.url, study_name)


def default_storage_url(run_root: Path) -> str:
    """SQLite in the search's output folder."""
    return f"sqlite:///{(run_root / 'study.db').resolve()}"


def display_url(url: str) -> str:
    """The URL with any password hidden."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def normalize_url(url: str) -> str:
    """Check the scheme; plain `postgresql://` uses psycopg2 (shipped) unless psycopg 3 is installed; a
    bare path ending in .db, .sqlite or .sqlite3 is a SQLite file."""
    if "://" not in url and not url.startswith(JOURNAL_PREFIX) and url.endswith((".db", ".sqlite", ".sqlite3")):
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith(JOURNAL_PREFIX):
        if not url[len(JOURNAL_PREFIX):]:
            raise StorageError("storage: 'journal:' needs a file path, e.g. journal:runs/optuna/study.journal")
        return url
    if url.startswith("sqlite:///"):
        if url in ("sqlite:///", "sqlite:///:memory:"):
            raise StorageError(f"storage: {url!r} is not a file; workers share a study through sqlite:///PATH")
        return url
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            driver = "psycopg" if importlib.util.find_spec("psycopg") else "psycopg2"
            return f"postgresql+{driver}://" + url[len(plain):]
    if url.startswith(("postgresql+psycopg2://", "postgresql+psycopg://")):
        return url
    raise StorageError(
        f"storage: {display_url(url)!r} is not supported; use sqlite:///FILE, postgresql+psycopg2://USER@HOST:PORT/DB "
        "or journal:FILE"
    )


def open_storage(
    url: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int | None = None,
) -> StorageHandle:
    """Open (creating tables or files as needed) the storage at `url`.

    With `heartbeat_interval`, SQLite and PostgreSQL trials send heartbeats; a trial silent for
    `grace_period` seconds is failed and re-queued up to `max_retry` times. Journal files ignore it.
    """
    url = normalize_url(url)
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return StorageHandle(url, JournalStorage(JournalFileBackend(str(path))), heartbeat=False)
    engine_kwargs = {}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        # Wait for the heartbeat thread or another worker instead of failing with "database is locked".
        engine_kwargs = {"connect_args": {"timeout": 60}}
    import sqlalchemy.exc

    # Workers started together on a fresh PostgreSQL database would race to create Optuna's tables.
    schema_lock = PostgresAdvisoryLock(url, SCHEMA_LOCK) if url.startswith("postgresql") else contextlib.nullcontext()
    try:
        with schema_lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            beat = {}
            if heartbeat_interval is not None:
                beat = dict(
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
                )
            storage = RDBStorage(url, engine_kwargs=engine_kwargs, **beat)
    except sqlalchemy.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
        hint = "start it with scripts/postgres.sh" if url.startswith("postgresql") else "check the path"
        raise StorageError(f"storage: cannot open {display_url(url)} ({reason}); {hint}") from None
    return StorageHandle(url, storage, heartbeat=heartbeat_interval is not None)
