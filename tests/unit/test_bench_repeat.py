"""bench/repeat.py: folding the JSON of several benchmark processes into medians with their spread."""

from __future__ import annotations

from bench.repeat import fold


def test_numbers_become_medians_with_min_and_max():
    runs = [
        {"a": {"p50_us": 10.0, "p99_us": 30.0}, "ratio": 1.2, "n": 3, "name": "x"},
        {"a": {"p50_us": 14.0, "p99_us": 90.0}, "ratio": 1.0, "n": 5, "name": "y"},
        {"a": {"p50_us": 11.0, "p99_us": 31.0}, "ratio": 1.1, "n": 4, "name": "z"},
    ]
    medians, spread = fold(runs)
    assert medians == {"a": {"p50_us": 11.0, "p99_us": 31.0}, "ratio": 1.1, "n": 4, "name": "x"}
    assert spread == {"a": {"p50_us": [10.0, 14.0], "p99_us": [30.0, 90.0]}, "ratio": [1.0, 1.2], "n": [3, 5]}


def test_even_counts_average_the_middle_pair_and_goals_have_no_spread():
    medians, spread = fold([{"x": 1.0, "goal": {"max": 2}}, {"x": 2.0, "goal": {"max": 2}}])
    assert medians == {"x": 1.5, "goal": {"max": 2}}
    assert spread == {"x": [1.0, 2.0]}


def test_a_key_missing_from_one_run_folds_over_the_others_and_booleans_stay_leaves():
    medians, spread = fold([{"x": 1.0, "ok": True}, {"x": 3.0, "y": 7.0, "ok": False}, {"x": 2.0}])
    assert medians == {"x": 2.0, "ok": True}
    assert spread == {"x": [1.0, 3.0]}
