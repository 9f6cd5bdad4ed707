"""Counted multiply-accumulates agree with a hand count of the convolutions; cost ratios are consistent."""

from __future__ import annotations

from torch import nn

from matting_lib.profiling import cost_table, count_macs


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
