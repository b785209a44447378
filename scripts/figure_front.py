"""The README's figure: ShareBench-real-tiny's 33 policies, held-out loss against parameters (mean and
seed std of 2 seeds), the paper's hand designs named, the bench's Pareto front, and the policies the
searches found beyond it (trained standalone, `front-policies-real-tiny`). Read from the committed
results only; needs matplotlib (`pip install -e '.[figures]'`).

    python scripts/figure_front.py [--out docs/assets/front-real-tiny.png]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
OUT = ROOT / "docs" / "assets" / "front-real-tiny.png"
NAMED = ("clip", "clip-t768", "msclip", "msclip-es", "msclip-s", "msclip-s-avgpool", "share-last-6")
"""The hand designs labelled on the figure (the others are drawn unlabelled)."""


def draw(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nas.bench.record import BenchRecord

    bench = BenchRecord.load(RESULTS / "sharebench-real-tiny.json")
    fronts = json.loads((RESULTS / "fronts-real-tiny.json").read_text())
    fig, ax = plt.subplots(figsize=(8, 4.6), dpi=110)
    for name, p in sorted(bench.policies.items()):
        x, y, err = p.params / 1e6, p.mean["val_loss"], p.std["val_loss"]
        hand = not name.startswith("random-")
        ax.errorbar(x, y, yerr=err, fmt="o" if hand else ".", color="tab:blue" if hand else "0.6", ms=5 if hand else 6,
                    elinewidth=0.8, capsize=2, zorder=3 if hand else 2)
        if name in NAMED:
            ax.annotate(name, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8, color="tab:blue")
    front = sorted(fronts["truth"]["front"], key=lambda p: p["params"])
    ax.step([p["params"] / 1e6 for p in front], [p["val_loss"] for p in front], where="post", color="tab:green",
            lw=1.2, label="the bench's Pareto front")
    found = [p for p in fronts["truth"]["front_all_scored"] if p["source"] != "bench"]
    ax.scatter([p["params"] / 1e6 for p in found], [p["val_loss"] for p in found], marker="*", s=140, color="tab:red",
               zorder=4, label="found by the MO-TPE study, trained standalone")
    ax.scatter([], [], marker=".", color="0.6", label="random policies of the Gumbel space")
    ax.scatter([], [], marker="o", color="tab:blue", label="hand designs (paper presets and ablations)")
    ax.set_xlabel("parameters (millions, tiny size)")
    ax.set_ylabel("held-out contrastive loss (nats, lower is better)")
    ax.set_title("ShareBench-real-tiny: 33 sharing policies, 2 seeds each", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    draw(parser.parse_args().out)
