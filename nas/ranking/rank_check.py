"""`sharenas search rank-check`: score proxies of policy quality against the bench's ground truth.

The ground truth is the mean over seeds of a bench metric (`truth`: the held-out loss unless the
config names another) of every bench policy that lies in the supernet's space (from the committed
bench table: nothing is retrained). Proxies:
- `supernet`: the held-out loss of the policy's path through a searched supernet (inherited weights,
  BatchNorm statistics recalibrated per path), on the same held-out pairs the bench used;
- `params`: the total parameter count (more is better) and `specific_sublayers`: the number of
  modality-specific sublayers (more is better), the trivial proxies a search must beat;
- `grad_norm` and `snip`: the data-dependent zero-cost proxies at initialization (`nas/zero_cost.py`);
- one per entry of `tables`: the mean held-out loss of another bench table over the same policies
  (e.g. short trials, the cost of a discrete search's objective).
Each gets Kendall tau, Spearman rho and top-k overlap with bootstrap intervals, and its tau as a
fraction of the noise ceiling (the seed-to-seed tau of the bench itself). The config is
`nas/ranking/config.py`, the supernet proxy `supernet_proxy.py`, the picks within the budget
`picks.py`, the markdown `render.py`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from search_spaces import ARCH_FILE, ArchRecord, SharingPolicy
from trainer import atomic
from trainer.evaluation.chance import contrastive_chance
from trainer.evaluation.precision import SCORE_PRECISION
from trainer.typed_config import CONFIG_FILE, ConfigError, load_config

from nas.bench.policies import in_space, specific_sublayers
from nas.bench.record import LOWER_IS_BETTER, BenchPolicy, BenchRecord
from nas.ranking.config import RankCheckConfig
from nas.ranking.rank_record import RankCheckRecord
from nas.ranking.statistics import rank_agreement
from nas.ranking.supernet_proxy import searched_run, supernet_scores
from nas.supernet.config import GumbelConfig
from nas.zero_cost import ZERO_COST, zero_cost_scores

RESULT_FILE = "rank_check.json"


def _relative(base: Path, value: str) -> Path:
    return Path(value) if Path(value).is_absolute() else base.parent / value


def read_bench_table(path: Path) -> BenchRecord:
    try:
        table = BenchRecord.load(path)
    except ConfigError as exc:
        raise ConfigError(f"bench: {exc}; give the output of `sharenas bench show --json`") from None
    precision = table.score_precision or "unrecorded"
    if precision == "unrecorded":
        print(f"rank-check: {path} does not record the precision its losses were scored in; taking it as {SCORE_PRECISION}, "
              "which holds for a bench built on the CPU with train.precision auto", file=sys.stderr)
    elif precision != SCORE_PRECISION:
        raise ConfigError(
            f"bench: {path} was scored at {precision}, the proxies at {SCORE_PRECISION}; their losses are not comparable. "
            "Use a bench table scored at the same precision"
        )
    return table


def _table_loss(entry: BenchPolicy, seeds: list[int] | None, proxy: str) -> float:
    """A bench policy's mean held-out loss, over `seeds` only when given."""
    if seeds is None:
        return entry.mean["val_loss"]
    losses = [r.scores["val_loss"] for r in entry.runs if r.seed in seeds]
    if len(losses) != len(seeds):
        raise ConfigError(f"table_seeds.{proxy}: a policy of that table lacks one of the seeds {seeds}")
    return sum(losses) / len(losses)


def run_rank_check(config: str | Path, out: str | Path, overrides: list[str] = ()) -> RankCheckRecord:
    from nas.supernet.rundir import build_space

    config, out = Path(config), Path(out)
    cfg = load_config(config, RankCheckConfig, list(overrides))
    bench_path = _relative(config, cfg.bench)
    table = read_bench_table(bench_path)
    bench_cfg = table.bench_config()
    search_cfg = load_config(_relative(config, cfg.search), GumbelConfig, cfg.sets(GumbelConfig))
    space = build_space(search_cfg)
    policies: dict[str, SharingPolicy] = {}
    skipped = []
    for name, entry in table.policies.items():
        policy = SharingPolicy.from_dict(entry.policy)
        if in_space(space, policy):
            policies[name] = policy
        else:
            skipped.append(name)
    if len(policies) < 3:
        raise ConfigError(f"bench: only {len(policies)} of its policies lie in the search space of {cfg.search}; a rank check needs 3")
    out.mkdir(parents=True, exist_ok=True)
    names = list(policies)
    ceilings = table.noise_ceiling_by_metric or {"val_loss": table.noise_ceiling}
    if not ceilings.get(cfg.truth):
        raise ConfigError(f"truth: {cfg.truth!r} has no noise ceiling in {bench_path}; choose from {', '.join(c for c in ceilings if ceilings[c])}")
    sign = -1.0 if cfg.truth in LOWER_IS_BETTER else 1.0
    truth = [sign * table.policies[n].mean[cfg.truth] for n in names]
    proxy_scores: dict[str, dict[str, float]] = {}
    subsets: dict[str, list[str]] = {}
    record: dict[str, dict[str, Any]] = {n: {"truth_val_loss": table.policies[n].mean["val_loss"], f"truth_{cfg.truth}": sign * v,
                                             "params": table.policies[n].params} for n, v in zip(names, truth)}
    runs: dict[str, dict[str, Any]] = {}
    trivial: dict[str, Callable[[str], float]] = {
        "params": lambda n: float(table.policies[n].params),
        "specific_sublayers": lambda n: float(specific_sublayers(policies[n])),
    }
    for proxy in cfg.proxies:
        if proxy in trivial:
            proxy_scores[proxy] = {n: trivial[proxy](n) for n in names}
            for n in names:
                record[n][proxy] = proxy_scores[proxy][n]
    zero_cost = [p for p in cfg.proxies if p in ZERO_COST]
    if zero_cost:
        from trainer.config import TrainConfig

        recipe = load_config(_relative(config, cfg.zero_cost.recipe), TrainConfig, cfg.sets(TrainConfig))
        scores = zero_cost_scores(policies, recipe.model.size, recipe.data, recipe.train.batch_size, cfg.zero_cost.seeds)
        for proxy in zero_cost:
            proxy_scores[proxy] = {n: scores[n].value(proxy) for n in names}
            runs[proxy] = {"cpu_seconds": sum(s.cpu_seconds for s in scores.values()), "seeds": cfg.zero_cost.seeds, "policies": len(names)}
            for n in names:
                record[n][proxy] = proxy_scores[proxy][n]
    wanted = [("supernet", [])] if "supernet" in cfg.proxies and cfg.only is None else []
    wanted += [(f"supernet-{name}", sets) for name, sets in cfg.options.items() if cfg.only is None or name in cfg.only]
    for proxy, sets in wanted:
        if proxy == "supernet" and cfg.supernet_run is not None:
            run = Path(cfg.supernet_run)
            if not (run / ARCH_FILE).is_file():
                raise ConfigError(f"supernet_run {run} holds no finished search; give the --out of a finished `search gumbel`")
        else:
            run = searched_run(out / proxy, load_config(_relative(config, cfg.search), GumbelConfig, [*cfg.sets(GumbelConfig), *sets]))
        option_space = build_space(load_config(run / CONFIG_FILE, GumbelConfig))
        inside = {n: p for n, p in policies.items() if in_space(option_space, p)}
        if len(inside) < 3:
            raise ConfigError(f"options.{proxy}: only {len(inside)} bench policies lie in its space; a rank check needs 3")
        if len(inside) < len(policies):
            subsets[proxy] = list(inside)
        finetune = cfg.finetune if cfg.finetune is not None and proxy in cfg.finetune.of else None
        entry = supernet_scores(run, bench_cfg, inside, finetune)
        arch = ArchRecord.load(run / ARCH_FILE)
        runs[proxy] = {"run": str(run), "set": sets, "search_seconds": arch.provenance.get("search_seconds"), "policies": len(inside)}
        for kind, suffix in (("inherited", ""), ("finetuned", f"+ft{cfg.finetune.steps}" if cfg.finetune else "")):
            if kind not in entry:
                continue
            scores = entry[kind]
            proxy_scores[proxy + suffix] = {n: scores[n]["score"] for n in inside}
            if proxy in subsets:
                subsets[proxy + suffix] = list(inside)
            for n in inside:
                record[n][proxy + suffix] = {k: scores[n][k] for k in ("val_loss", "zeroshot")}
    if cfg.conflict is not None and cfg.only is None:
        from nas.conflict.config import ConflictConfig
        from nas.conflict.search import conflict_scores

        conflict = conflict_scores(_relative(config, cfg.conflict), out / "conflict", cfg.sets(ConflictConfig))
        proxy_scores["conflict"] = {n: conflict.score(policies[n]) for n in names}
        runs["conflict"] = {"run": str(out / "conflict"), "search_seconds": conflict.seconds}
        for n in names:
            record[n]["conflict"] = proxy_scores["conflict"][n]
    for proxy, other_path in cfg.tables.items():
        other = read_bench_table(_relative(config, other_path)).policies
        missing = [n for n in names if n not in other]
        if missing:
            raise ConfigError(f"tables.{proxy}: {other_path} lacks {', '.join(missing[:3])}; it must hold every policy of the bench")
        losses = {n: _table_loss(other[n], cfg.table_seeds.get(proxy), proxy) for n in names}
        proxy_scores[proxy] = {n: -loss for n, loss in losses.items()}
        for n in names:
            record[n][proxy] = losses[n]
    ceiling = ceilings[cfg.truth]
    proxies = {}
    truth_of = dict(zip(names, truth))
    for proxy, scores in proxy_scores.items():
        subset = subsets.get(proxy, names)
        agreement = rank_agreement([truth_of[n] for n in subset], [scores[n] for n in subset], cfg.top_k, cfg.bootstrap, cfg.seed)
        agreement["top5_overlap"] = agreement.get(f"top{cfg.top_k}_overlap")
        agreement["ratio_to_ceiling"] = agreement["kendall"] / ceiling["kendall"] if ceiling.get("kendall") else None
        if proxy in subsets:  # on fewer policies: the parameter-count proxy on the same ones, for comparison
            agreement["params_kendall_same_policies"] = rank_agreement(
                [truth_of[n] for n in subset], [trivial["params"](n) for n in subset], cfg.top_k, cfg.bootstrap, cfg.seed)["kendall"]
        proxies[proxy] = agreement
    picks = None
    if "supernet" in runs:
        from nas.ranking.picks import proxy_picks

        picks = proxy_picks(Path(runs["supernet"]["run"]), table)
    kept: list[str] = []
    if cfg.keep is not None:
        picks, kept = _keep(_relative(config, cfg.keep), names, proxies, record, runs, picks)
    result = RankCheckRecord(
        str(bench_path), cfg.truth, SCORE_PRECISION,
        "mean held-out loss over seeds (lower is better)" if cfg.truth == "val_loss" else f"mean {cfg.truth} over seeds (higher is better)",
        table.score_precision or "unrecorded", len(names), picks, skipped, runs.get("supernet", {}).get("run"), runs, ceiling, proxies, record, cfg,
        (table.chance or {}).get("val_loss") or contrastive_chance(bench_cfg.heldout.pairs, bench_cfg.heldout.batch_size), kept,
    )
    atomic.write_json(out / RESULT_FILE, result.to_json())
    return result


def _keep(path: Path, names: list[str], proxies: dict[str, Any], record: dict[str, dict[str, Any]], runs: dict[str, Any],
          picks: list[dict[str, Any]] | None) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """Copy the proxies of the previous result `path` that this run did not score (in place); returns
    the picks (this run's, else the previous ones) and the names copied."""
    try:
        previous = RankCheckRecord.load(path)
    except ConfigError as exc:
        raise ConfigError(f"keep: cannot read the previous rank check: {exc}") from None
    if sorted(previous.policies) != sorted(names):
        raise ConfigError(f"keep: {path} scored other policies than this run; keep a result of the same bench and space")
    kept = [p for p in previous.proxies if p not in proxies]
    scored = dict(proxies)
    proxies.clear()  # the previous result's order, then what it lacked
    proxies.update({p: scored.get(p, previous.proxies[p]) for p in previous.proxies})
    proxies.update({p: a for p, a in scored.items() if p not in proxies})
    for proxy in kept:
        for n in names:
            if proxy in previous.policies[n]:
                record[n][proxy] = previous.policies[n][proxy]
        base = proxy.split("+")[0]
        if base in previous.runs and base not in runs:
            runs[base] = previous.runs[base]
    return picks if picks is not None else previous.picks, kept
