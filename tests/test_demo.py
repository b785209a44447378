"""The demo's reading of its picks table: chance levels and the bench's training length come from
the bench table, not from typed-in numbers."""
from __future__ import annotations

import copy
import json

import yaml

from nas.bench.record import BenchRecord
from nas.cli.demo import BENCH, picks_note


def test_the_picks_note_reads_the_committed_bench():
    note = picks_note(BenchRecord.load(BENCH), 1024)
    # ShareBench-tiny: 4,096 held-out pairs in batches of 128 (chance ln 128), 6 epochs of training
    assert "batches of 128) = 4.85." in note and "6-epoch trainings" in note and "1024 held-out pairs" in note


def test_the_picks_note_follows_another_held_out_batch_and_training_length():
    table = copy.deepcopy(json.loads(BENCH.read_text()))
    config = yaml.safe_load(table["config"])
    config["heldout"]["batch_size"] = 100
    table["config"] = yaml.safe_dump(config)
    for entry in table["policies"].values():
        for run in entry["runs"]:
            run["curve"] = run["curve"][:3]
    note = picks_note(BenchRecord.from_json(table), 1024)
    # by hand: 1,024 pairs = 10 x 100 + 24 -> (1000 ln 100 + 24 ln 24) / 1024 = 4.572;
    # 4,096 = 40 x 100 + 96 -> (4000 ln 100 + 96 ln 96) / 4096 = 4.604
    assert "batches of 100) = 4.57 inherited, 4.60 standalone." in note and "3-epoch trainings" in note
