import json
from pathlib import Path

from search_spaces import PRESET_NAMES, count_params

PAPER = json.loads((Path(__file__).parent.parent / "experiments" / "paper_results.json").read_text())


def paper_params_m() -> dict[str, float]:
    """Every B/32 parameter count of SPEC section 1, in millions, keyed by preset."""
    table: dict[str, float] = {}
    for key in ("table3_sublayer_sharing", "table6_auxiliary_modules", "supp_table5_partial_sharing"):
        table.update({row["preset"]: row["params_m"] for row in PAPER[key]})
    for row in PAPER["table4_share_last_k"]:
        if isinstance(row["k"], int):
            table[f"share-last-{row['k']}"] = row["params_m"]
    return table


def test_clip_counts_equal_open_clip_exactly():
    exact = PAPER["b32_exact_param_counts_open_clip_style"]
    assert count_params("clip", "b32").total == exact["clip"] == 151_277_313
    assert count_params("clip-t768", "b32").total == exact["clip-t768"]


def test_every_b32_preset_is_within_two_percent_of_the_paper():
    table = paper_params_m()
    assert len(table) == 19
    assert set(table) <= set(PRESET_NAMES)
    for name, paper_m in table.items():
        total = count_params(name, "b32").total
        assert abs(total / 1e6 - paper_m) / paper_m <= 0.02, (name, total, paper_m)


def test_auxiliary_modules_cost_what_the_paper_says():
    msclip = count_params("msclip", "b32")
    pb = count_params("msclip-pb", "b32").total - msclip.total
    assert 3.7e6 <= pb <= 4.1e6  # paper Table 2: 3.9M
    es = count_params("msclip-es", "b32")
    # ES adds the 4.1M stem (Table 1) and removes the 2.36M patch embedding and vision layer 0's LNs.
    assert es.total - msclip.total == 4_119_984 - 768 * 3 * 32 * 32 - 4 * 768
    # Sharing moves no parameter into two places: shared + specific add up to the total.
    assert msclip.shared + msclip.vision_specific + msclip.text_specific == msclip.total
