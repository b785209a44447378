"""Where a trial's code reports to: Tune's session for a trial that is one process, Ray Train's for
each worker of a trial that runs data-parallel (`nas.tune.train_workers`).

The trial code (`nas.tune.trainables`) is the same for both: it asks the session which process it is,
for the checkpoint to resume from, and reports each result with the checkpoint of that result.
Ray Train's report is a barrier every worker joins, so every process reports (the metrics and the
checkpoint of process 0 are the ones kept); Tune's is the one process's own.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Protocol


class Session(Protocol):
    rank: int

    @property
    def is_main(self) -> bool: ...

    def restore(self, into: Path) -> bool:
        """Put the checkpoint to resume from into `into` (process 0; the others wait); whether there was one."""

    def report(self, metrics: dict[str, Any], checkpoint: Path | None = None) -> None: ...

    def barrier(self) -> None: ...


@contextmanager
def _as_directory(checkpoint: Any) -> Iterator[Path]:
    with checkpoint.as_directory() as path:
        yield Path(path)


def _replace_with(checkpoint: Any, into: Path) -> None:
    import shutil

    with _as_directory(checkpoint) as saved:
        if into.exists():
            shutil.rmtree(into)
        shutil.copytree(saved, into)


class TuneSession:
    """A trial that is one process (a Tune function trainable)."""

    rank = 0
    is_main = True

    def restore(self, into: Path) -> bool:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            _replace_with(checkpoint, into)
        return checkpoint is not None

    def report(self, metrics: dict[str, Any], checkpoint: Path | None = None) -> None:
        from ray import tune

        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint) if checkpoint is not None else None)

    def barrier(self) -> None:
        pass


class WorkerSession:
    """One worker of a Ray Train run, inside the process group Ray Train set up. The run directory is
    on a filesystem every worker shares (as for torchrun across nodes), so process 0 alone restores it."""

    def __init__(self) -> None:
        import ray.train

        self.rank = ray.train.get_context().get_world_rank()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def restore(self, into: Path) -> bool:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None and self.is_main:
            _replace_with(checkpoint, into)
        self.barrier()
        return checkpoint is not None

    def report(self, metrics: dict[str, Any], checkpoint: Path | None = None) -> None:
        import ray.train

        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint) if checkpoint is not None else None)

    def barrier(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.barrier()
