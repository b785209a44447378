"""Which bench policy each proxy would pick within a budget, and how that pick did standalone.

A search is only as good as the policy it hands over. For the bench policies that lie in a
supernet's space and fit the budget, each proxy picks its best: the supernet (lowest held-out loss
with inherited weights), the parameter count (most parameters) and the number of specific
sublayers (most; ties by parameters). Their standalone results come from the bench table (mean ±
std over seeds), beside `msclip`, `msclip-s` and the search's own derived policy (inherited weights
only: it is usually not a bench policy)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from search_spaces import ARCH_FILE, ArchRecord, SharingPolicy
from trainer.typed_config import CONFIG_FILE, load_config

from nas.bench.policies import in_space, specific_sublayers
from nas.bench.record import BenchPolicy, BenchRecord
from nas.ranking.supernet_proxy import supernet_scores
from nas.supernet.config import GumbelConfig
from nas.supernet.rundir import build_space

REFERENCES = ("msclip", "msclip-s")
DERIVED = "gumbel-derived"


def proxy_picks(run: Path, table: BenchRecord, heldout_pairs: int | None = None) -> list[dict[str, Any]]:
    """Rows (policy, how it was chosen, params, inherited and bench held-out loss) for a finished
    search `run` against the bench `table`; the inherited
    loss is measured on the bench's held-out pairs (the first `heldout_pairs` of them when given)."""
    cfg = load_config(run / CONFIG_FILE, GumbelConfig)
    space, budget = build_space(cfg), cfg.search.budget_params
    overrides = [f"heldout.pairs={heldout_pairs}"] if heldout_pairs else []
    bench_cfg = table.bench_config(overrides)
    entries = table.policies
    candidates: dict[str, SharingPolicy] = {}
    for name, entry in entries.items():
        policy = SharingPolicy.from_dict(entry.policy)
        if not in_space(space, policy):
            continue
        if budget is None or entry.params <= budget or name in REFERENCES:
            candidates[name] = policy
    arch = ArchRecord.load(run / ARCH_FILE)
    scored = {**candidates, DERIVED: arch.policy}
    inherited = supernet_scores(run, bench_cfg, scored, None)["inherited"]
    eligible = [n for n in candidates if budget is None or entries[n].params <= budget]
    picks = {
        "supernet": min(eligible, key=lambda n: inherited[n]["val_loss"]),
        "params": max(eligible, key=lambda n: entries[n].params),
        "specific_sublayers": max(eligible, key=lambda n: (specific_sublayers(candidates[n]), entries[n].params)),
    }
    rows = [_row(DERIVED, "the search's derived policy", arch.params.total, inherited[DERIVED], None)]
    for proxy, name in picks.items():
        rows.append(_row(name, f"pick of the {proxy} proxy", entries[name].params, inherited[name], entries[name]))
    for name in REFERENCES:
        if name in candidates:
            rows.append(_row(name, "hand design", entries[name].params, inherited[name], entries[name]))
    return rows


def _row(name: str, chosen: str, params: int, inherited: dict[str, float], entry: BenchPolicy | None) -> dict[str, Any]:
    row = {"policy": name, "chosen as": chosen, "params": params, "inherited held-out loss": inherited["val_loss"]}
    if entry is not None:
        row["standalone held-out loss"] = entry.mean["val_loss"]
        row["standalone std"] = entry.std.get("val_loss")
        row["seeds"] = len(entry.runs)
    return row


def picks_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as a printable table (losses in nats, lower is better)."""
    out = []
    for r in rows:
        if "standalone held-out loss" in r:
            spread = "" if r["standalone std"] is None else f" ± {r['standalone std']:.3f}"
            standalone = f"{r['standalone held-out loss']:.3f}{spread} ({r['seeds']} seeds)"
        else:
            standalone = "not in the bench"
        out.append({"policy": r["policy"], "chosen as": r["chosen as"], "params": f"{r['params']:,}",
                    "inherited held-out loss": f"{r['inherited held-out loss']:.3f}", "standalone held-out loss (bench)": standalone})
    return pd.DataFrame(out)
