"""optuna-dashboard for a sharenas storage, bound to 127.0.0.1 (it has no authentication).

Trial artifacts (`arch.json`) live in each study's artifact folder, recorded in the study's
`artifact_dir` user attribute; the dashboard serves all of them unless one folder is given.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from nas.discrete.storage import JOURNAL_PREFIX, StorageError, normalize_url, open_storage

HOST = "127.0.0.1"


class ArtifactFolders:
    """An Optuna artifact store over several `FileSystemArtifactStore` folders: reads search all of
    them (artifact ids are unique), writes go to the first."""

    def __init__(self, folders: Sequence[Path]) -> None:
        if not folders:
            raise ValueError("ArtifactFolders needs at least one folder")
        self.stores = [FileSystemArtifactStore(str(f)) for f in folders]

    def open_reader(self, artifact_id: str) -> BinaryIO:
        for store in self.stores:
            try:
                return store.open_reader(artifact_id)
            except ArtifactNotFound:
                continue
        raise ArtifactNotFound(f"artifact {artifact_id} is in none of the artifact folders")

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.stores[0].write(artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        for store in self.stores:
            try:
                store.remove(artifact_id)
            except ArtifactNotFound:
                continue


def study_artifact_folders(storage: optuna.storages.BaseStorage) -> list[Path]:
    """The existing `artifact_dir` folders recorded by the studies in `storage`."""
    folders = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        folder = summary.user_attrs.get("artifact_dir")
        if folder and Path(folder).is_dir() and Path(folder) not in folders:
            folders.append(Path(folder))
    return folders


def serve_dashboard(storage_url: str, port: int = 8080, artifact_dir: Path | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve optuna-dashboard on http://127.0.0.1:PORT until interrupted; `on_ready(url)` runs once the
    storage has opened (so a bad storage fails before anything announces a server)."""
    from optuna_dashboard import run_server

    url = normalize_url(storage_url)
    for prefix in ("sqlite:///", JOURNAL_PREFIX):
        if url.startswith(prefix) and not Path(url[len(prefix):]).is_file():
            raise StorageError(f"storage: {url[len(prefix):]} does not exist; give the --storage of a search")
    handle = open_storage(url)
    folders = [artifact_dir] if artifact_dir is not None else study_artifact_folders(handle.storage)
    store = ArtifactFolders(folders) if folders else None
    if on_ready is not None:
        on_ready(f"http://{HOST}:{port}/")
    run_server(handle.storage, host=HOST, port=port, artifact_store=store)

