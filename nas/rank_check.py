"""Does the supernet rank policies like standalone training does? `sharenas search rank-check`.

Trains >= 20 fixed policies standalone with the trainer (the Gumbel config's data, optim, train and
eval sections plus `standalone_overrides`), scores the same policies with the supernet's inherited
weights, both on the same held-out architecture split, and reports Kendall tau, Spearman rho and
top-k overlap with bootstrap intervals (OUT/rank_check.json and a table).

Incremental and resumable: every policy's result is written to OUT/results/NAME.json as soon as it
is known, a rerun skips what is there and resumes a half-trained standalone run from its checkpoint.
The supernet comes from `supernet_run` (a `search gumbel` output) or is searched into OUT/supernet.
"""
from __future__ import annotations

import json
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file

from search_spaces import PolicyError, SharingPolicy, build_model, count_params, get_preset
from trainer.checkpoint import load_model_weights
from trainer.config import ConfigError, TrainConfig, dump_config, load_config, to_dict
from trainer.data import build_data
from trainer.distributed import pick_device
from trainer.loop import autocast_context, train

from nas.derive import ARCH_FILE, POLICY_FILE
from nas.gumbel_config import GumbelConfig
from nas.gumbel_search import CONFIG_FILE, SUPERNET_FILE, build_space, run_gumbel_search
from nas.ranking import rank_agreement
from nas.scoring import Scorer, materialize
from nas.supernet import Supernet
from nas.supernet_space import SearchSpace

DEFAULT_POLICIES = [
    "msclip", "clip-t768", "share-all", "msclip-s", "share-attn-only", "share-ffn-only", "share-attn-ffn-ln1",
    "share-attn-ffn-ln2", "msclip-es", "msclip-pb", "share-last-2", "share-last-4", "share-last-6", "share-last-8", "share-last-10",
]
RESULT_FILE = "rank_check.json"


@dataclass
class RankCheckConfig:
    """`search`: the Gumbel config (YAML path, relative to this file) whose supernet is checked.
    `policies`: preset names or policy .json paths; `random_policies` uniformly random ones are added
    (seeded by `seed`), and the search's own derived policy when `include_derived`.
    `metric`: what both sides are ranked by (`val_loss` on the architecture split, or `zeroshot`)."""

    search: str = "gumbel.yaml"
    supernet_run: str | None = None
    policies: list[str] = field(default_factory=lambda: list(DEFAULT_POLICIES))
    random_policies: int = 6
    include_derived: bool = True
    standalone_overrides: list[str] = field(default_factory=list)
    metric: Literal["val_loss", "zeroshot"] = "val_loss"
    top_k: int = 5
    bootstrap: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.random_policies < 0 or self.top_k < 1 or self.bootstrap < 1:
            raise ConfigError("random_policies must be >= 0, top_k and bootstrap >= 1")


def load_rank_config(path: str | Path, overrides: list[str] = ()) -> tuple[RankCheckConfig, GumbelConfig]:
    cfg = load_config(path, RankCheckConfig, overrides)
    search = Path(cfg.search) if Path(cfg.search).is_absolute() else Path(path).parent / cfg.search
    return cfg, load_config(search, GumbelConfig)


def _supernet_dir(cfg: RankCheckConfig, search_cfg: GumbelConfig, out: Path) -> Path:
    if cfg.supernet_run is not None:
        run = Path(cfg.supernet_run)
        if not (run / SUPERNET_FILE).is_file():
            raise ConfigError(f"supernet_run {run} holds no {SUPERNET_FILE}; give the --out of a finished `search gumbel`")
        return run
    run = out / "supernet"
    if not (run / ARCH_FILE).is_file():
        if run.exists():
            print(f"rank-check: {run} holds an unfinished search; searching again", file=sys.stderr)
            shutil.rmtree(run)
        run_gumbel_search(search_cfg, run, retrain=False)
    return run


def candidate_policies(cfg: RankCheckConfig, space: SearchSpace, run: Path) -> dict[str, SharingPolicy]:
    """The policies to compare, by result name; each is checked to lie in the supernet's space."""
    out: dict[str, SharingPolicy] = {}
    for name in cfg.policies:
        is_file = name.endswith(".json")
        policy = SharingPolicy.load(name) if is_file else get_preset(name, space.size)
        space.from_policy(policy)
        out[Path(name).stem if is_file else name] = policy
    rng = random.Random(cfg.seed)
    for k in range(1, cfg.random_policies + 1):
        choices = [rng.randint(0, 1) for _ in range(space.num_gates)]
        out[f"random-{k}"] = space.to_policy(choices, name=f"random-{k}")
    if cfg.include_derived:
        out["derived"] = SharingPolicy.from_dict({**SharingPolicy.load(run / POLICY_FILE).to_dict(), "name": "derived"})
    return out


class RankCheck:
    def __init__(self, cfg: RankCheckConfig, search_cfg: GumbelConfig, out: Path) -> None:
        self.cfg, self.search_cfg, self.out = cfg, search_cfg, out
        out.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out / "config.yaml")
        self.run_dir = _supernet_dir(cfg, search_cfg, out)
        run_cfg = load_config(self.run_dir / CONFIG_FILE, GumbelConfig)
        if to_dict(run_cfg.data) != to_dict(search_cfg.data):
            raise ConfigError(f"the supernet in {self.run_dir} used other data settings than {cfg.search}; both sides must share the held-out split")
        self.space = build_space(run_cfg)
        self.policies = candidate_policies(cfg, self.space, self.run_dir)
        if len(self.policies) < 3:
            raise ConfigError("a rank check needs at least 3 policies")
        t = search_cfg.train
        if t.num_threads is not None:
            torch.set_num_threads(t.num_threads)
        self.device = pick_device(t.device)
        size = self.space.size
        self.bundle = build_data(search_cfg.data, size.image_size, size.context_length)
        d = run_cfg.derive
        self.scorer = Scorer(
            self.bundle, materialize(self.bundle.arch, d.batch_size), self.device, cfg.metric,
            calibration=materialize(self.bundle.train, d.batch_size, d.batch_size * d.bn_recalibration_batches) if d.bn_recalibration_batches else None,
            autocast=lambda: autocast_context(self.device, t.precision), context_length=size.context_length,
        )

    def _path(self, name: str) -> Path:
        return self.out / "results" / f"{name}.json"

    def _record(self, name: str) -> dict[str, Any]:
        """The stored result of `name`; one stored for another policy (e.g. a new derived one) is dropped,
        with its standalone run, and a supernet score from another supernet does not count."""
        path, policy = self._path(name), self.policies[name].to_dict()
        record = json.loads(path.read_text()) if path.is_file() else {"policy": policy}
        if record["policy"] != policy:
            shutil.rmtree(self.out / "standalone" / name, ignore_errors=True)
            record = {"policy": policy}
        if "supernet" in record and record["supernet"].get("run") != str(self.run_dir.resolve()):
            del record["supernet"]
        return record

    def _write(self, name: str, record: dict[str, Any]) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(path)

    def score_supernet(self) -> None:
        missing = [n for n in self.policies if "supernet" not in self._record(n)]
        if not missing:
            return
        supernet = Supernet(self.space)
        supernet.load_state_dict(load_file(str(self.run_dir / SUPERNET_FILE)))
        supernet.to(self.device)
        for name in missing:
            supernet.fix(self.policies[name])
            record = self._record(name)
            record["supernet"] = {**self.scorer.measure(supernet, recalibrate=True), "run": str(self.run_dir.resolve())}
            self._write(name, record)

    def train_standalone(self, name: str) -> None:
        record = self._record(name)
        if "standalone" in record:
            return
        policy_file = self.out / "policies" / f"{name}.json"
        policy_file.parent.mkdir(parents=True, exist_ok=True)
        self.policies[name].save(policy_file)
        s = self.search_cfg
        raw = {**to_dict(TrainConfig(data=s.data, optim=s.optim, train=s.train, eval=s.eval)), "model": {"policy": str(policy_file), "size": self.space.size.name}}
        train_cfg = load_config(raw, TrainConfig, self.cfg.standalone_overrides)
        run = self.out / "standalone" / name
        start = time.perf_counter()
        train(train_cfg, run, resume=(run / "config.yaml").is_file())
        model = build_model(self.policies[name], self.space.size)
        load_model_weights(model, run)
        model.to(self.device)
        record["standalone"] = self.scorer.measure(model)
        record["params"] = count_params(self.policies[name], self.space.size).total
        record["train_seconds"] = round(time.perf_counter() - start, 1)
        self._write(name, record)

    def report(self) -> dict[str, Any]:
        rows = {n: self._record(n) for n in self.policies}
        done = {n: r for n, r in rows.items() if "standalone" in r and "supernet" in r}
        result: dict[str, Any] = {"metric": self.cfg.metric, "supernet_run": str(self.run_dir), "policies": rows}
        if len(done) >= 3:
            names = sorted(done)
            for metric in ("val_loss", "zeroshot"):
                sign = -1.0 if metric == "val_loss" else 1.0
                truth = [sign * done[n]["standalone"][metric] for n in names]
                proxy = [sign * done[n]["supernet"][metric] for n in names]
                result[f"agreement/{metric}"] = rank_agreement(truth, proxy, self.cfg.top_k, self.cfg.bootstrap, self.cfg.seed)
            result["agreement"] = result[f"agreement/{self.cfg.metric}"]
            if "derived" in done and "msclip" in done:
                d, m = done["derived"], done["msclip"]
                key = self.cfg.metric
                better = d["standalone"][key] < m["standalone"][key] if key == "val_loss" else d["standalone"][key] > m["standalone"][key]
                result["derived_vs_msclip"] = {
                    "derived_params": d["params"], "msclip_params": m["params"], f"derived_{key}": d["standalone"][key],
                    f"msclip_{key}": m["standalone"][key], "better": bool(better), "no_more_params": d["params"] <= m["params"],
                }
        (self.out / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
        return result

    def run(self) -> dict[str, Any]:
        self.score_supernet()
        for i, name in enumerate(self.policies, 1):
            if "standalone" not in self._record(name):
                print(f"rank-check: training {name} ({i}/{len(self.policies)})", file=sys.stderr)
            self.train_standalone(name)
            self.report()
        return self.report()


def run_rank_check(config: str | Path, out: str | Path, overrides: list[str] = ()) -> dict[str, Any]:
    cfg, search_cfg = load_rank_config(config, list(overrides))
    try:
        return RankCheck(cfg, search_cfg, Path(out)).run()
    except PolicyError as exc:
        raise ConfigError(f"policies: {exc}") from None
