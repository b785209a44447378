"""Trials larger than one process: the Tune trial drives a Ray Train run (`TorchTrainer`).

Ray's pattern for Train inside Tune (Ray Train V2): the Tune trial's function builds a
`TorchTrainer` and calls `fit()`; the trial code runs on every worker, in a process group Ray Train
set up (`TorchConfig`: NCCL when the workers have GPUs, gloo otherwise), so the trainer's own DDP
path (`trainer.loop.train`) and the Gumbel search's gradient all-reduce run there unchanged, as
under torchrun. Every worker reports (Ray Train's report is a barrier); Ray keeps process 0's
metrics and checkpoint, and `TuneReportCallback` hands each result to the Tune trial, where the
scheduler and the searcher see it as they see a one-process trial's.

Failures: a worker that fails or dies makes Ray Train start the workers again, up to
`max_failures` times (`ray.train.FailureConfig`), each resuming from the last reported checkpoint
(`ray.train.get_checkpoint()`). The Train run is named after the Tune trial, so a trial that Tune
itself retries (or `--resume` restores) continues the same Train run from its last checkpoint.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nas.tune.config import ResourcesSection
from nas.tune.sessions import WorkerSession

TrialBody = Callable[..., None]
"""`body(session, **kwargs)`: a trial's code, run on each worker with that worker's session."""


def scaling_config(resources: ResourcesSection) -> Any:
    from ray.train import ScalingConfig

    per_worker = {"CPU": resources.cpu_per_worker}
    if resources.gpu_per_worker:
        per_worker["GPU"] = resources.gpu_per_worker
    return ScalingConfig(num_workers=resources.workers, use_gpu=resources.gpu_per_worker > 0, resources_per_worker=per_worker)


def _worker(loop_config: dict[str, Any]) -> None:
    loop_config["body"](WorkerSession(), **loop_config["kwargs"])


def fit_on_workers(body: TrialBody, kwargs: dict[str, Any], resources: ResourcesSection, max_failures: int, storage: str) -> None:
    """Run `body` on `resources.workers` Ray Train workers for the current Tune trial; Train's run
    state lives in `storage`/<trial id>."""
    from ray import train, tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    run_config = train.RunConfig(
        name=tune.get_context().get_trial_id(), storage_path=storage, failure_config=train.FailureConfig(max_failures=max_failures),
        checkpoint_config=train.CheckpointConfig(num_to_keep=2), callbacks=[TuneReportCallback()],
    )
    trainer = TorchTrainer(_worker, train_loop_config={"body": body, "kwargs": kwargs}, scaling_config=scaling_config(resources),
                           run_config=run_config)
    trainer.fit()
