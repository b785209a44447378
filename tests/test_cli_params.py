import json

import pytest
from typer.testing import CliRunner

from nas.cli import app
from search_spaces import get_preset

runner = CliRunner()


def test_params_json_matches_open_clip_total():
    result = runner.invoke(app, ["params", "clip", "--size", "b32", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total"] == 151_277_313
    assert data["shared"] + data["vision_specific"] + data["text_specific"] == data["total"]


def test_params_reads_a_policy_file(tmp_path):
    path = tmp_path / "policy.json"
    get_preset("msclip-s", "tiny").save(path)
    result = runner.invoke(app, ["params", str(path), "--size", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["policy"] == "msclip-s"


def _layers(n, sub="attn"):
    layer = {"attn": "shared", "ffn": "shared", "ln1": "specific", "ln2": "specific"}
    return [layer] * n


@pytest.mark.parametrize(
    "policy, field",
    [
        ({"layers": [{**_layers(1)[0], "conv": "shared"}] + _layers(11)}, "layers[0].conv"),
        ({"layers": _layers(11)}, "layers: 11 entries"),
        ({"layers": _layers(12), "text_width": 512}, "text_width: 512"),
    ],
)
def test_malformed_policy_exits_2_with_one_line(tmp_path, policy, field):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(policy))
    result = runner.invoke(app, ["params", str(path), "--size", "b32"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0], result.stderr


@pytest.mark.parametrize("args", [["--help"], ["params", "--help"]])
def test_help_shows_flags_without_a_value(args):
    """A boolean option is a flag: the help shows `--version`, `--json`, never `--version <bool>`."""
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    flags = [line.split()[0] for line in result.stdout.splitlines() if line.strip().startswith(("--version", "--json", "--help"))]
    assert flags and "<bool>" not in result.stdout, result.stdout


def test_version_flag_prints_the_version():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"sharenas {version('sharenas')}", result.output
