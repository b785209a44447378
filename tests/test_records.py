"""Result records: every committed result file of a typed kind (bench tables, sweeps, Pareto fronts,
rank checks) reads through its record and renders the committed markdown again; each record survives
`from_json(to_json(x))`; old forms (a bench table's config as YAML text, a rank check without a schema)
still read, a new bench table holds its config as data; a schema no reader knows is one line naming it."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from nas.bench.config import BenchConfig
from nas.bench.record import BenchRecord
from nas.bench.render import bench_markdown
from nas.pareto.record import ParetoRecord
from nas.pareto.study import to_markdown as pareto_markdown
from nas.ranking.rank_record import RankCheckRecord
from nas.ranking.render import rank_check_markdown
from nas.records import RecordError, read_record
from nas.supernet.sweep_record import SweepRecord
from trainer.typed_config import load_config, to_dict

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
KINDS = (BenchRecord, ParetoRecord, SweepRecord, RankCheckRecord)
COMMITTED = {"sharenas/bench": 8, "sharenas/pareto": 6, "sharenas/sweep": 2, "sharenas/rank-check": 3}
"""How many committed files of each kind there are (at least)."""


def committed(kind: type) -> list[Path]:
    """The committed result files of `kind`: by their schema, or (the first rank checks had none) by name."""
    out = []
    for path in sorted(RESULTS.glob("*.json")):
        schema = json.loads(path.read_text()).get("schema")
        if (schema or "").rpartition("/")[0] == kind.KIND or (schema is None and kind is RankCheckRecord and path.name.startswith("rank-check")):
            out.append(path)
    return out


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.KIND)
def test_every_committed_file_of_a_kind_reads_and_survives_a_round_trip(kind):
    paths = committed(kind)
    assert len(paths) >= COMMITTED[kind.KIND]
    for path in paths:
        record = kind.load(path)
        assert kind.from_json(record.to_json()) == record, path.name
        if json.loads(path.read_text()).get("schema") is not None:
            assert read_record(path, *KINDS) == record


def _regenerate(markdown: Path) -> str:
    """The `Regenerate: `...`` command a committed markdown names."""
    return re.search(r"Regenerate: `([^`]*)`", markdown.read_text()).group(1)


RENDERED_SINCE = ("**Noise ceiling**", "## Noise ceiling per metric", "## Training length (agreement")
"""What the bench renderer writes differently since the headline ceiling names the ranking column (and the
ceilings the seeds they pair, the length study two more columns). A committed markdown rendered before
then differs from the renderer there and only there, as `bench show` of its JSON shows on main too."""


def _sections(text: str) -> dict[str, str]:
    """Heading line -> the text of its section (the lines before the first heading under ""), the headline
    noise ceiling apart."""
    out: dict[str, str] = {}
    heading = ""
    for line in text.splitlines(keepends=True):
        if line.startswith("**Noise ceiling**"):
            out[line] = line
            continue
        heading = line.strip() if line.startswith("## ") else heading
        out[heading] = out.get(heading, "") + line
    return out


@pytest.mark.parametrize("path", committed(BenchRecord), ids=lambda p: p.stem)
def test_a_committed_bench_table_renders_its_markdown(path):
    markdown = path.with_suffix(".md")
    text = markdown.read_text()
    title = text.splitlines()[0].removeprefix("# ")
    origin = re.search(r"^Regenerate: `[^`]*`(?: \((.*?)\))?\. \d+ training runs", text, re.M).group(1) or ""
    rendered = bench_markdown(BenchRecord.load(path), title, _regenerate(markdown), origin)
    if "the ranking metric" in text:
        assert rendered == text
        return
    ours, theirs = ({k: v for k, v in _sections(t).items() if not k.startswith(RENDERED_SINCE)} for t in (rendered, text))
    assert ours == theirs and len(ours) >= 3  # the header, the policies and the pooled seed std at least


@pytest.mark.parametrize("path", committed(RankCheckRecord), ids=lambda p: p.stem)
def test_a_committed_rank_check_renders_its_markdown(path):
    record = RankCheckRecord.load(path)
    name = BenchRecord.load(ROOT / record.bench).name
    assert rank_check_markdown(record, _regenerate(path.with_suffix(".md")), name) == path.with_suffix(".md").read_text()


@pytest.mark.parametrize("path", committed(ParetoRecord), ids=lambda p: p.stem)
def test_a_committed_pareto_front_renders_its_markdown(path):
    text = path.with_suffix(".md").read_text()
    rendered = pareto_markdown(ParetoRecord.load(path))
    assert text == rendered or text.endswith("\n" + rendered)  # pareto-tiny.md: the commands and notes above it


def test_a_v1_bench_table_holds_its_config_as_yaml_text_and_is_written_back_as_data(tmp_path):
    old = json.loads((RESULTS / "derived-tiny.json").read_text())
    assert old["schema"] == "sharenas/bench/v1" and isinstance(old["config"], str)
    table = BenchRecord.from_json(old)
    assert table.config == load_config(yaml.safe_load(old["config"]), BenchConfig)
    new = table.to_json()
    assert new["schema"] == "sharenas/bench/v2" and new["config"] == to_dict(table.config)
    assert {k: v for k, v in new.items() if k not in ("schema", "config")} == {k: v for k, v in old.items() if k not in ("schema", "config")}
    assert BenchRecord.from_json(json.loads(json.dumps(new))) == table
    # a hand-written table: no schema (read as v1), no config (the defaults), a policy with its mean alone
    bare = BenchRecord.from_json({"policies": {"a": {"params": 1, "policy": {}, "mean": {"val_loss": 1.0}}}, "noise_ceiling": None})
    assert bare.config is None and bare.bench_config() == BenchConfig() and bare.policies["a"].runs == []
    assert BenchRecord.from_json(bare.to_json()) == bare


def test_bench_show_of_a_v1_table_writes_the_config_as_data(tmp_path):
    from typer.testing import CliRunner

    from nas.cli.app import app

    result = CliRunner().invoke(app, ["bench", "show", str(RESULTS / "derived-tiny.json"), "--json", "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    old = json.loads((RESULTS / "derived-tiny.json").read_text())
    assert shown["schema"] == "sharenas/bench/v2" and shown["config"] == to_dict(load_config(yaml.safe_load(old["config"]), BenchConfig))
    assert shown["policies"]["gumbel-derived-tiny"]["runs"] == old["policies"]["gumbel-derived-tiny"]["runs"]  # the runs as recorded


def test_a_rank_check_without_a_schema_reads_as_v1_and_is_written_with_one(tmp_path):
    old = json.loads((RESULTS / "rank-check-real-tiny.json").read_text())
    assert "schema" not in old and "kept" not in old
    record = RankCheckRecord.from_json(old)
    assert record.kept is None and record.config.truth == "retrieval_real_i2t_r10"
    new = record.to_json()
    assert list(new)[0] == "schema" and new["schema"] == "sharenas/rank-check/v1" and "kept" not in new
    (tmp_path / "rank_check.json").write_text(json.dumps(old))
    assert RankCheckRecord.load(tmp_path / "rank_check.json") == record
    with pytest.raises(RecordError, match="no schema; this reads sharenas/bench/v2, sharenas/rank-check/v1"):
        read_record(tmp_path / "rank_check.json", BenchRecord, RankCheckRecord)  # which of two that take unlabelled files: refused


def test_an_unknown_or_newer_schema_is_one_line_naming_it(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"schema": "sharenas/regime/v1", "rows": []}))
    with pytest.raises(RecordError) as info:
        read_record(path, *KINDS)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: schema 'sharenas/regime/v1' is not one this reads (")
    assert all(kind.schema() in message for kind in KINDS)
    with pytest.raises(RecordError, match="schema 'sharenas/pareto/v1' is not one this reads \\(sharenas/bench/v2\\)"):
        BenchRecord.load(RESULTS / "pareto-tiny.json")
    path.write_text(json.dumps({"schema": "sharenas/sweep/v3"}))
    with pytest.raises(RecordError, match="'sharenas/sweep/v3' was written by a newer sharenas \\(this one reads up to sharenas/sweep/v2\\)"):
        SweepRecord.load(path)
    path.write_text(json.dumps({"schema": "sharenas/sweep/v1", "run": "r"}))
    with pytest.raises(RecordError, match=f"^{re.escape(str(path))}: no 'score' entry; a sharenas/sweep record has one$"):
        SweepRecord.load(path)
    path.write_text("{not json")
    with pytest.raises(RecordError, match="is not readable JSON"):
        read_record(path, *KINDS)


def test_bench_front_takes_a_pareto_or_sweep_record_and_refuses_another_kind(tmp_path):
    from typer.testing import CliRunner

    from nas.cli.app import app

    bench = RESULTS / "sharebench-tiny.json"
    refused = CliRunner().invoke(app, ["bench", "front", str(bench), "--out", str(tmp_path / "f.json"), "--judge", f"x={bench}"])
    assert refused.exit_code == 2
    assert "schema 'sharenas/bench/v1' is not one this reads (sharenas/pareto/v1, sharenas/sweep/v2)" in refused.output
