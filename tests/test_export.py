"""Export: a directory that rebuilds the model without the search code, for every kind of source."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nas.cli import app
from nas.discrete.config import load_search_config
from nas.discrete.search import run_search
from search_spaces import ExportError, build_model, count_model_params, load_exported, save_exported
from search_spaces.model.exported import weights_size

from test_gumbel_search import short_config
from test_optuna_search import load_study, search_config

ROOT = Path(__file__).resolve().parents[1]
BLOCKED_LOAD = """
import sys, json, torch
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('nas', 'optuna', 'ray'):
            raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, Block())
from search_spaces import load_exported
model = load_exported(sys.argv[1])
torch.manual_seed(0)
size = model.size
image = torch.randn(3, 3, size.image_size, size.image_size)
tokens = torch.randint(1, 400, (3, size.context_length)); tokens[:, 7] = size.vocab_size - 1
with torch.no_grad():
    out = {'image': model.encode_image(image).tolist(), 'text': model.encode_text(tokens).tolist()}
assert not any(m.split('.')[0] in ('nas', 'optuna', 'ray') for m in sys.modules)
print(json.dumps(out))
"""


def embeddings(model, size=None) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    size = size or model.size
    image = torch.randn(3, 3, size.image_size, size.image_size)
    tokens = torch.randint(1, 400, (3, size.context_length))
    tokens[:, 7] = size.vocab_size - 1
    with torch.no_grad():
        return {"image": model.eval().encode_image(image), "text": model.encode_text(tokens)}


def load_in_clean_process(directory: Path) -> dict[str, torch.Tensor]:
    result = subprocess.run([sys.executable, "-c", BLOCKED_LOAD, str(directory)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    return {k: torch.tensor(v) for k, v in json.loads(result.stdout.splitlines()[-1]).items()}


def test_gumbel_export_loads_without_the_search_code(short_gumbel_run, tmp_path):
    from safetensors.torch import load_file

    from nas.supernet.rundir import build_space
    from nas.supernet.model import Supernet
    from search_spaces import SharingPolicy

    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", str(short_gumbel_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "arch.json").read_text())
    assert record["schema"] == "sharenas/arch/v2" and record["size"] == "tiny" and "inherited" in record["weights_origin"]
    assert record["provenance"]["search"] == "gumbel" and {"torch", "sharenas"} <= set(record["packages"])
    assert "inherited" in (out / "README.md").read_text()
    supernet = Supernet(build_space(short_config()))
    supernet.load_state_dict(load_file(str(short_gumbel_run / "supernet.safetensors")))
    policy = SharingPolicy.load(short_gumbel_run / "arch.json")
    supernet.fix(policy)
    reference = embeddings(supernet)  # the supernet's own path: export must equal it
    loaded = load_in_clean_process(out)
    for key in ("image", "text"):
        assert (loaded[key] - reference[key]).abs().max() <= 1e-6


def test_optuna_export_takes_the_best_trial_and_loads_without_the_search_code(tmp_path):
    cfg = load_search_config(search_config(tmp_path, baselines=["msclip", "share-all"], n_trials=2))
    result = run_search(cfg)
    best = load_study(result.storage, "t").best_trial
    out = tmp_path / "export"
    cli = CliRunner().invoke(app, ["export", "--storage", result.storage, "--study", "t", "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    record = json.loads((out / "arch.json").read_text())
    assert record["provenance"]["trial"] == best.number and record["provenance"]["study"] == "t"
    source = build_model(str(Path(best.user_attrs["run_dir"]) / "policy.json"), "tiny")
    from trainer.checkpoint import load_model_weights

    load_model_weights(source, Path(best.user_attrs["run_dir"]))
    reference, loaded = embeddings(source), load_in_clean_process(out)
    for key in ("image", "text"):
        assert (loaded[key] - reference[key]).abs().max() <= 1e-6
    other = CliRunner().invoke(app, ["export", "--storage", result.storage, "--study", "t", "--trial", "99", "--out", str(tmp_path / "x")])
    assert other.exit_code == 2 and "trial 99" in other.output


def test_shared_tensors_are_stored_once(tmp_path):
    model = build_model("msclip", "tiny")
    save_exported(model, tmp_path, {}, {}, {})
    counts = count_model_params(model)
    stored = weights_size(tmp_path)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert stored == 4 * counts.total + buffers
    assert (tmp_path / "model.safetensors").stat().st_size < 4 * (counts.total + counts.shared)  # twice-stored would exceed this


def test_onnx_encoders_match_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    from nas.export.onnx import export_onnx

    torch.manual_seed(0)
    model = build_model("msclip-s", "tiny").eval()  # conv stem, parallel branch, BatchNorm, shared attention
    info = export_onnx(model, tmp_path)
    assert info["max_abs_diff"] <= 1e-4 and info["checked_batches"] == [1, 3]
    assert (tmp_path / "image_encoder.onnx").is_file() and (tmp_path / "text_encoder.onnx").is_file()


def test_corrupt_or_truncated_files_give_one_line_errors(tmp_path):
    save_exported(build_model("msclip", "tiny"), tmp_path, {}, {}, {})
    weights = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ExportError, match="corrupt") as info:
        load_exported(tmp_path)
    assert "\n" not in str(info.value)
    (tmp_path / "arch.json").write_text('{"schema": "sharenas/arch/v1", "size": "ti')
    with pytest.raises(ExportError, match="corrupt or truncated") as info:
        load_exported(tmp_path)
    assert "\n" not in str(info.value)
    (tmp_path / "arch.json").write_text(json.dumps({"schema": "sharenas/arch/v9", "size": "tiny", "policy": {}}))
    with pytest.raises(ExportError, match="newer sharenas"):
        load_exported(tmp_path)
    result = CliRunner().invoke(app, ["export", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_non_shared_export_loads_in_open_clip(tmp_path):
    import logging

    import open_clip

    logging.getLogger().setLevel(logging.ERROR)
    model = build_model("clip", "tiny").eval()
    record = save_exported(model, tmp_path, {}, {}, {})
    assert record.open_clip["config"] == "open_clip_config.json"
    theirs, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp_path}")
    ours, reference = embeddings(model), embeddings(theirs, model.size)
    for key in ("image", "text"):
        assert (ours[key] - reference[key]).abs().max() <= 1e-5


def chromium() -> str | None:
    result = subprocess.run(["bash", str(ROOT / "scripts" / "chromium.sh"), "path"], capture_output=True, text=True)
    return result.stdout.strip() or None


def test_reports_for_a_search_a_study_and_a_bench_render_offline(short_gumbel_run, tmp_path):
    from nas.report import write_report

    gumbel = write_report(short_gumbel_run, tmp_path / "gumbel.html")
    assert [h for h, _ in gumbel.figures] == ["Gates", "Derived policy"]
    cfg = load_search_config(search_config(tmp_path, baselines=["msclip", "clip", "msclip-s"], n_trials=3))
    result = run_search(cfg)
    study = write_report(None, tmp_path / "study.html", storage=result.storage, study="t")
    assert [h for h, _ in study.figures][:3] == ["Pareto front", "Best policies", "History"]
    table = study.tables[0][1]
    assert "Δ zeroshot/digits/top1 vs msclip" in table.columns and (table.loc[table["policy"] == "msclip", "Δ params vs msclip"] == 0).all()
    pareto = study.figures[0][1]
    assert {t.name for t in pareto.data} >= {"msclip", "clip", "msclip-s", "Pareto front"}
    from optuna_dashboard._custom_plot_data import SYSTEM_ATTR_PLOT_DATA  # the figures are also on the dashboard

    reloaded = load_study(result.storage, "t")
    attrs = reloaded._storage.get_study_system_attrs(reloaded._study_id)
    ids = {k[len(SYSTEM_ATTR_PLOT_DATA):].split(":")[0] for k in attrs if k.startswith(SYSTEM_ATTR_PLOT_DATA)}
    assert ids == {"sharenas-" + h.lower().replace(" ", "-") for h, _ in study.figures}
    html = (tmp_path / "study.html").read_text()
    assert not re.search(r"<script[^>]*src=", html) and html.count("Plotly.newPlot") == len(study.figures)  # plotly.js inline: offline
    browser = chromium()
    if browser is None:
        pytest.skip("chromium not installed (scripts/chromium.sh install); the HTML checks above ran")
    for page, figures in ((tmp_path / "study.html", len(study.figures)), (tmp_path / "gumbel.html", len(gumbel.figures))):
        run = subprocess.run(["bash", str(ROOT / "scripts" / "chromium.sh"), "check", str(page)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
        assert not console, console
        assert run.stdout.count('class="plot-container plotly"') == figures  # every figure was drawn by plotly.js
