"""Counted multiply-accumulates agree with a hand count of the convolutions; cost ratios are consistent."""

from __future__ import annotations

from torch import nn

from matting_lib.networks.profiling import cost_markdown, cost_table, count_macs


def test_count_macs_matches_hand_count():
    net = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 5, padding=2))
    h = w = 16
    expected = h * w * (8 * 4 * 9) + h * w * (2 * 8 * 25)
    assert count_macs(net, (h, w)) == expected


def test_cost_table_student_is_cheaper():
    rows = cost_table(width=0.125, size=64, repeats=1)
    teacher, student, ratio = rows
    assert teacher["params"] > student["params"] > 0
    assert 0 < ratio["macs"] < 0.5 and 0 < ratio["params"] < 0.5
    assert ratio["macs"] == student["macs"] / teacher["macs"]
    assert student["latency_ms"] > 0


def test_cost_markdown_formats_ratios_as_percent():
    rows = [
        {"network": "teacher", "width": 1.0, "size": 32, "params": 1000, "macs": 2e9, "latency_ms": 10.0, "threads": 2},
        {
            "network": "student / teacher",
            "width": 1.0,
            "size": 32,
            "params": 0.2,
            "macs": 0.15,
            "latency_ms": 0.3,
            "threads": 2,
        },
    ]
    md = cost_markdown(rows)
    assert "GMACs @ 32²" in md and "| teacher | 1.0 | 1,000 | 2.00 | 10 |" in md and "| 20.0% | 15.0% | 30.0% |" in md
