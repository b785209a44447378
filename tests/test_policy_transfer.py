"""A policy searched at one size builds at every other: the adapter schedule is stored size-free."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from search_spaces import ARCH_SCHEMA, PolicyError, SharingPolicy, count_params, get_preset, get_size, resolve_policy
from nas.cli import app


def write_arch(path, size: str, name: str = "msclip-s") -> None:
    """An arch.json as searches wrote it before `auto` existed: explicit kernels of its own size."""
    policy = get_preset(name, size)
    assert policy.parallel_branch.adapter_kernels is not None
    path.write_text(json.dumps({"schema": ARCH_SCHEMA, "size": size, "policy": policy.to_dict()}))


@pytest.mark.parametrize(("source", "target"), [("tiny", "b32"), ("b32", "tiny")])
def test_arch_json_transfers_across_sizes(tmp_path, source, target):
    arch = tmp_path / "arch.json"
    write_arch(arch, source)
    result = CliRunner().invoke(app, ["params", str(arch), "--size", target, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total"] == count_params("msclip-s", target).total
    own = CliRunner().invoke(app, ["params", str(arch), "--json"])  # no --size: the recorded one
    assert json.loads(own.output)["size"] == source and json.loads(own.output)["total"] == count_params("msclip-s", source).total


def test_auto_kernels_round_trip_and_resolve_per_size(tmp_path):
    portable = get_preset("msclip-s", "tiny").portable(get_size("tiny"))
    assert portable.parallel_branch.to_dict()["adapter_kernels"] == "auto"
    path = tmp_path / "p.json"
    portable.save(path)
    loaded = SharingPolicy.load(path)
    assert loaded == portable
    assert loaded.parallel_branch.kernels_for(get_size("b32")) == (16, 8, 4, 2, 1)
    assert loaded.parallel_branch.kernels_for(get_size("tiny")) == (4, 2, 1, 1, 1)
    assert count_params(loaded, "b32").total == count_params("msclip-s", "b32").total


def test_explicit_kernels_of_another_size_say_how_to_transfer(tmp_path):
    path = tmp_path / "p.json"
    get_preset("msclip-s", "tiny").save(path)  # a plain policy file does not record its size
    with pytest.raises(PolicyError, match='"auto"'):
        resolve_policy(str(path), "b32")
