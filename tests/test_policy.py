import json

import pytest

from search_spaces import (
    PRESET_NAMES,
    LayerSharing,
    ParallelBranchSpec,
    PolicyError,
    SharingPolicy,
    get_preset,
    get_size,
    resolve_policy,
)


@pytest.mark.parametrize("size", ["tiny", "b32", "b16"])
def test_every_preset_round_trips_through_json(size):
    for name in PRESET_NAMES:
        policy = get_preset(name, size)
        policy.check_size(get_size(size))
        again = SharingPolicy.from_json(policy.to_json())
        assert again == policy and again.name == name
        assert json.loads(policy.to_json())["schema"] == "sharenas/policy/v1"


def test_presets_mean_what_the_table_says():
    size = get_size("b32")
    msclip = get_preset("msclip", size)
    assert all(l == LayerSharing("shared", "shared", "specific", "specific") for l in msclip.layers)
    assert get_preset("clip", size).text_width == 512 and not get_preset("clip", size).any_shared
    last4 = get_preset("share-last-4", size)
    assert [l.any_shared for l in last4.layers] == [False] * 8 + [True] * 4
    s = get_preset("msclip-s", size)
    assert s.early_specialization and s.parallel_branch.fusion_layers == (2, 4, 6, 8, 10)
    assert s.parallel_branch.adapter_kernels == (16, 8, 4, 2, 1)
    assert get_preset("msclip-s", "b16").parallel_branch.adapter_kernels == (8, 4, 2, 1, 1)
    assert not any(s.layers[0].is_shared(sub) for sub in ("attn", "ffn", "ln1", "ln2"))


def _policy_dict(n=12, **kw):
    d = {"schema": "sharenas/policy/v1", "layers": [{"attn": "shared", "ffn": "shared", "ln1": "specific", "ln2": "specific"}] * n}
    d.update(kw)
    return d


@pytest.mark.parametrize(
    "data, field",
    [
        ({"layers": [{"attn": "shared", "ffn": "shared", "ln1": "specific", "ln2": "specific", "mlp": "shared"}]}, "layers[0].mlp"),
        ({"layers": [{"attn": "maybe", "ffn": "shared", "ln1": "specific", "ln2": "specific"}]}, "layers[0].attn"),
        ({"layers": [{"attn": "shared", "ffn": "shared", "ln1": "specific"}]}, "layers[0].ln2"),
        (_policy_dict(extra=1), "policy.extra"),
        (_policy_dict(schema="other/v9"), "schema"),
        (_policy_dict(text_width="wide"), "text_width"),
        (_policy_dict(early_specialization=True), "layers[0].attn"),
        (_policy_dict(parallel_branch={"fusion_layers": [4, 2], "adapter_kernels": [16, 8]}), "parallel_branch.fusion_layers"),
        (_policy_dict(parallel_branch={"fusion_layers": [2, 4], "adapter_kernels": [16]}), "parallel_branch.adapter_kernels"),
        (_policy_dict(parallel_branch={"fusion_layers": [2, 4], "adapter_kernels": [16, 4]}), "parallel_branch.adapter_kernels[1]"),
        (_policy_dict(parallel_branch={"fusion_layers": [2, 12], "adapter_kernels": [16, 8]}), "parallel_branch.fusion_layers"),
        (_policy_dict(parallel_branch={"fusion_layers": [2], "adapter_kernels": [16], "kernel": 3}), "parallel_branch.kernel"),
    ],
)
def test_malformed_policies_name_the_field(data, field):
    with pytest.raises(PolicyError) as info:
        SharingPolicy.from_dict(data)
    assert str(info.value).startswith(field), str(info.value)


def test_size_checks_name_the_field():
    b32 = get_size("b32")
    with pytest.raises(PolicyError, match=r"^layers: 11 entries but size 'b32' has 12"):
        SharingPolicy.from_dict(_policy_dict(11)).check_size(b32)
    with pytest.raises(PolicyError, match=r"^text_width: 512 but layers\[0\]\.attn is shared"):
        SharingPolicy.from_dict(_policy_dict(text_width=512)).check_size(b32)
    SharingPolicy.from_dict(_policy_dict(text_width=768)).check_size(b32)
    pb = ParallelBranchSpec((2, 4), (8, 4))
    with pytest.raises(PolicyError, match=r"^parallel_branch\.adapter_kernels\[0\]: 8 but size 'b32' needs 16"):
        SharingPolicy(get_preset("msclip").layers, parallel_branch=pb).check_size(b32)


def test_policy_files(tmp_path):
    path = tmp_path / "p.json"
    get_preset("share-last-6", "tiny").save(path)
    assert resolve_policy(str(path), "tiny") == get_preset("share-last-6", "tiny")
    with pytest.raises(PolicyError, match="not found"):
        resolve_policy(str(tmp_path / "missing.json"), "tiny")
    path.write_text("{not json")
    with pytest.raises(PolicyError, match=r"^policy: not valid JSON"):
        SharingPolicy.load(path)
    with pytest.raises(PolicyError, match="neither a preset"):
        resolve_policy("msclip-xl", "tiny")


def test_policy_is_read_from_an_arch_json(tmp_path):
    policy = get_preset("msclip-es", "tiny")
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"schema": "sharenas/arch/v1", "size": "tiny", "policy": policy.to_dict()}))
    assert SharingPolicy.load(path) == policy
    path.write_text(json.dumps({"schema": "sharenas/arch/v1", "size": "tiny"}))
    with pytest.raises(PolicyError, match="no 'policy' entry"):
        SharingPolicy.load(path)
