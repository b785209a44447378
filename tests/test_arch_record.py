"""`ArchRecord`, the one reader and writer of `arch.json`.

`tests/data/arch/` holds one `arch.json` per producer (export, export with open_clip files, Gumbel
derive, Optuna trial, conflict search), on the tiny fixtures rebuilt below: the producers must still
write the same thing, and every committed `arch.json` must read. `tests/data/arch/v1/` holds the same
files as schema v1 wrote them (by each producer's own code, before they shared the record): they
read as their v2 twins.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from search_spaces import ARCH_SCHEMA, ArchError, ArchRecord, build_model, count_params, get_preset, save_exported

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "arch"
CONFIG_DUMPS = {"conflict": [("provenance", "config")], "optuna": [("model",), ("train_config",)]}
"""Entries that are a config's own dump (they follow the config classes, not the record)."""


def committed_arch_files() -> list[Path]:
    found = []
    for path in sorted([*ROOT.glob("experiments/**/*.json"), *ROOT.glob("tests/data/**/*.json")]):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and str(data.get("schema", "")).startswith("sharenas/arch/"):
            found.append(path)
    return found


def test_every_committed_arch_json_reads_and_round_trips():
    files = [p for p in committed_arch_files() if json.loads(p.read_text())["schema"] == ARCH_SCHEMA]
    assert {p.stem for p in files} >= {"conflict", "export", "export-open-clip", "gumbel", "optuna"}
    for path in files:
        data = json.loads(path.read_text())
        record = ArchRecord.load(path)
        assert record.to_json() == data, path
        assert ArchRecord.from_json(record.to_json()) == record, path


@pytest.mark.parametrize("producer", ["conflict", "export", "export-open-clip", "gumbel", "optuna"])
def test_a_v1_arch_json_reads_as_its_v2_twin(producer):
    """v2 renamed the Gumbel search's architecture-split loss (`val_loss` -> `arch_val_loss`); every
    other entry of a v1 file reads as it was."""
    old, new = ArchRecord.load(DATA / "v1" / f"{producer}.json"), json.loads((DATA / f"{producer}.json").read_text())
    assert old.to_json() == new


def test_a_hand_written_arch_json_with_size_and_policy_reads(tmp_path):
    policy = get_preset("msclip-es", "tiny")
    record = ArchRecord.from_json({"schema": ARCH_SCHEMA, "size": "tiny", "policy": policy.to_dict()})
    assert record.policy == policy and record.params is None and record.metrics == {} and record.model_size().name == "tiny"
    record.save(tmp_path / "arch.json")
    assert ArchRecord.load(tmp_path / "arch.json") == record


@pytest.mark.parametrize(("data", "message"), [
    ({"schema": "sharenas/arch/v9", "size": "tiny", "policy": {}}, "newer sharenas"),
    ({"schema": "sharenas/policy/v1", "size": "tiny", "policy": {}}, "not a sharenas architecture"),
    ({"schema": ARCH_SCHEMA, "size": "tiny"}, "no 'policy' entry"),
    ({"schema": ARCH_SCHEMA, "size": "tiny", "policy": {"layers": []}, "extra": 1}, "extra: unknown entry"),
    ({"schema": ARCH_SCHEMA, "size": "tiny", "policy": {"layers": [{}]}}, r"layers\[0\]"),
    ({"schema": ARCH_SCHEMA, "size": "tiny", "policy": get_preset("msclip", "tiny").to_dict(), "params": {"total": 3}}, "params"),
    ({"schema": ARCH_SCHEMA, "size": "tiny", "policy": get_preset("msclip", "tiny").to_dict(), "model_config": {"x": 1}}, "model_config"),
])
def test_a_bad_arch_json_is_one_line_that_names_the_file(tmp_path, data, message):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ArchError, match=message) as info:
        ArchRecord.load(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def without_config_dumps(data: dict, producer: str) -> dict:
    data = json.loads(json.dumps(data))
    for keys in CONFIG_DUMPS.get(producer, []):
        *parents, last = keys
        holder = data
        for key in parents:
            holder = holder[key]
        holder.pop(last)
    return data


def written(tmp_path: Path, producer: str) -> Path:
    """What `producer` writes today on the fixture its file in tests/data/arch/ was written on."""
    out = tmp_path / producer
    if producer == "export":
        torch.manual_seed(0)
        save_exported(build_model("msclip-s", "tiny"), out, {"source": "fixture", "step": 3}, {"zeroshot/top1": 0.25}, {"torch": "x"}, "trained")
    elif producer == "export-open-clip":
        save_exported(build_model("clip", "tiny"), out, {}, {}, {})
    elif producer == "gumbel":
        from nas.supernet.derive import Candidate, write_arch

        policy = get_preset("msclip", "tiny")
        winner = Candidate("argmax", [0] * 48, policy, count_params(policy, "tiny").total, True, {"score": -1.5, "arch_val_loss": 1.5}, ["sample-1"])
        other = Candidate("sample-2", [1] * 48, get_preset("share-all", "tiny"), 123, False, {"score": float("-inf"), "arch_val_loss": float("nan")})
        write_arch(out, winner, [other, winner], "tiny", {"search": "gumbel", "search_seconds": 1.25}, {"inherited/arch_val_loss": 1.5})
    elif producer == "optuna":
        from nas.discrete.records import arch_record
        from trainer.config import TrainConfig
        from trainer.typed_config import load_config

        cfg = load_config({"model": {"policy": "msclip", "size": "tiny"}, "data": {"source": "shapes"}}, TrainConfig)
        policy = get_preset("share-all", "tiny")
        out.mkdir()
        arch_record(policy, cfg, count_params(policy, "tiny"), {"val_loss": 2.0}, {"search": "optuna", "trial": 3}).save(out / "arch.json")
    return out / "arch.json"


@pytest.mark.parametrize("producer", ["export", "export-open-clip", "gumbel", "optuna"])
def test_each_producer_writes_what_it_wrote_before(tmp_path, producer):
    path, before = written(tmp_path, producer), DATA / f"{producer}.json"
    assert without_config_dumps(json.loads(path.read_text()), producer) == without_config_dumps(json.loads(before.read_text()), producer)
    if producer != "optuna":  # a trial wrote `policy` before `size`; the record writes every file in one order
        assert path.read_text() == before.read_text()


def test_the_conflict_search_writes_what_it_wrote_before(tmp_path, monkeypatch):
    import nas.conflict.search as conflict
    from nas.conflict.config import ConflictConfig
    from trainer.typed_config import load_config

    cfg = load_config({"size": "tiny", "data": {"source": "shapes"}, "train": {"epochs": None, "steps": 3},
                       "conflict": {"batches": 2, "batch_size": 16, "budget": None, "max_specific": 3}}, ConflictConfig)
    cosines = {f"L{i:02d}.{s}": (i * 4 + k) / 100 - 0.3 for i in range(12) for k, s in enumerate(("attn", "ffn", "ln1", "ln2"))}
    monkeypatch.setattr(conflict, "measure_conflicts", lambda cfg, out: conflict.Conflicts(dict(sorted(cosines.items(), key=lambda kv: kv[1])), 4.5))
    record = conflict.run_conflict_search(cfg, tmp_path)
    before = json.loads((DATA / "conflict.json").read_text())
    assert without_config_dumps(json.loads((tmp_path / "arch.json").read_text()), "conflict") == without_config_dumps(before, "conflict")
    assert record == ArchRecord.load(tmp_path / "arch.json")
