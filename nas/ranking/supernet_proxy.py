"""The supernet proxy of the rank check: the held-out loss of each policy's path through a searched
supernet (inherited weights, BatchNorm statistics recalibrated per path), on the held-out pairs the
bench used, optionally after a short standalone fine-tune; the search is run (or resumed) first when
its directory holds no finished one. Scores are cached in the run directory."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from tqdm import tqdm

from search_spaces import ARCH_FILE, SharingPolicy
from trainer import atomic
from trainer.evaluation.precision import SCORE_PRECISION
from trainer.typed_config import CONFIG_FILE, load_config, to_dict

from nas.bench.config import BenchConfig
from nas.ranking.config import FinetuneSection
from nas.supernet.config import GumbelConfig

SCORES_FILE = "rank_scores.json"


def searched_run(run: Path, search_cfg: GumbelConfig) -> Path:
    """`run` holding a finished search: searched now, resumed when interrupted after a save."""
    from nas.supernet.rundir import SEARCH_STATE_FILE
    from nas.supernet.search import run_gumbel_search

    if (run / ARCH_FILE).is_file():
        return run
    if (run / SEARCH_STATE_FILE).is_file():
        print(f"rank-check: resuming the interrupted search in {run}", file=sys.stderr)
        run_gumbel_search(search_cfg, run, retrain=False, resume=True)
        return run
    if run.exists():
        print(f"rank-check: {run} holds a search stopped before its first save; searching again", file=sys.stderr)
        shutil.rmtree(run)
    run_gumbel_search(search_cfg, run, retrain=False)
    return run


def supernet_scores(
    run: Path, bench_cfg: BenchConfig, policies: dict[str, SharingPolicy], finetune: FinetuneSection | None
) -> dict[str, dict[str, dict[str, float]]]:
    """Held-out loss (and zero-shot) of each policy's path through the supernet of `run`, and after
    a fine-tune when asked: {"inherited": {policy: scores}, "finetuned": ...}. Cached in
    `run/rank_scores.json` per held-out set and fine-tune setting."""
    import torch
    from safetensors.torch import load_file

    from trainer.data import build_data
    from trainer.distributed import pick_device

    from nas.bench.build import held_out_pairs
    from nas.scoring import Scorer, materialize
    from nas.supernet.finetune import finetuned_standalone
    from nas.supernet.rundir import build_supernet, weights_file

    h = bench_cfg.heldout
    keys = {"inherited": json.dumps({"heldout": to_dict(h), "precision": SCORE_PRECISION}, sort_keys=True)}
    if finetune is not None:
        keys["finetuned"] = json.dumps(
            {"heldout": to_dict(h), "precision": SCORE_PRECISION, "finetune": {"steps": finetune.steps, "lr": finetune.lr}}, sort_keys=True
        )
    cache_file = run / SCORES_FILE
    cached = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    entry = {kind: cached.get(key, {}) for kind, key in keys.items()}
    if all(set(policies) <= set(scores) for scores in entry.values()):
        return {kind: {n: scores[n] for n in policies} for kind, scores in entry.items()}
    search_cfg = load_config(run / CONFIG_FILE, GumbelConfig)
    t, d = search_cfg.train, search_cfg.derive
    if t.num_threads is not None:
        torch.set_num_threads(t.num_threads)
    device = pick_device(t.device)
    supernet = build_supernet(search_cfg)
    size = supernet.space.size
    bundle = build_data(search_cfg.data, size.image_size, size.context_length)
    scorer = Scorer(
        bundle, materialize(held_out_pairs(h, bundle, size), h.batch_size), device, "val_loss",
        calibration=materialize(bundle.train, d.batch_size, d.batch_size * d.bn_recalibration_batches) if d.bn_recalibration_batches else None,
        context_length=size.context_length,
    )
    supernet.to(device)
    loaded = None
    train_batches = materialize(bundle.train, t.batch_size, t.batch_size * finetune.steps) if finetune else None
    todo = [n for n in policies if any(n not in scores for scores in entry.values())]
    for name in tqdm(todo, desc=f"score {run.name}", unit="policy", file=sys.stderr):
        policy = policies[name]
        weights = weights_file(run, policy, supernet.space)
        if weights != loaded:
            supernet.load_state_dict(load_file(str(weights)))
            loaded = weights
        supernet.fix(policy)
        entry["inherited"][name] = scorer.measure(supernet, recalibrate=True)
        if finetune:
            model = finetuned_standalone(supernet, policy, train_batches, finetune.lr, search_cfg.optim, device)
            entry["finetuned"][name] = scorer.measure(model)
    cached.update({keys[kind]: scores for kind, scores in entry.items()})
    atomic.write_json(cache_file, cached)
    return {kind: {n: scores[n] for n in policies} for kind, scores in entry.items()}
