"""Candidate registry decisions: version numbering, the idempotency plan per request window, and how object keys
group into version folders (pure, no TensorFlow, no AWS)."""

from __future__ import annotations

import pytest

from training.registry import Entry, Plan, group_versions, next_version, plan, prefix


@pytest.mark.parametrize(
    ("parent", "existing", "expected"),
    [
        ("1", [], "2"),
        (None, [], "1"),
        ("1", ["2", "3"], "4"),  # after every registered version, not just the parent
        ("7", ["2", "3"], "8"),  # after the parent even when the registry has fewer
        ("3", ["10", "9"], "11"),  # numeric, not lexicographic
        ("1", ["2", "scratch", "v5"], "3"),  # non-integer folders do not count
    ],
)
def test_next_version(parent: str | None, existing: list[str], expected: str) -> None:
    assert next_version(parent, existing) == expected


def test_plan_creates_the_next_version_for_a_new_window() -> None:
    entries = [Entry("2", "2026-11-10T00:00:00Z", True), Entry("3", "2026-11-12T00:00:00Z", True)]
    assert plan(entries, "2026-11-14T00:00:00Z", "3") == Plan("create", "4")
    assert plan([], "w", "1") == Plan("create", "2")


def test_plan_finds_the_complete_candidate_of_the_same_window() -> None:
    entries = [Entry("2", "w1", True), Entry("3", "w2", True), Entry("4", "w3", False)]
    assert plan(entries, "w2", "1") == Plan("exists", "3")


def test_plan_resumes_an_unfinished_claim_of_the_same_window() -> None:
    # a build that died after claiming version 4: the rerun builds 4 again instead of leaving a hole
    entries = [Entry("2", "w1", True), Entry("4", "w3", False)]
    assert plan(entries, "w3", "2") == Plan("resume", "4")


def test_plan_prefers_a_complete_candidate_over_a_later_unfinished_one() -> None:
    entries = [Entry("5", "w", False), Entry("4", "w", True), Entry("10", "w", True)]
    assert plan(entries, "w", "1") == Plan("exists", "4")


def test_plan_ignores_versions_without_a_claim() -> None:
    # a version copied in by hand (no claim.json) only reserves its number
    entries = [Entry("1", None, True), Entry("6", None, False)]
    assert plan(entries, "w", "1") == Plan("create", "7")


def test_group_versions_ignores_the_live_record_and_other_models() -> None:
    keys = [
        "models/digits/live.json",
        "models/digits/2/claim.json",
        "models/digits/2/manifest.json",
        "models/digits/2/model.tflite",
        "models/digits/3/claim.json",
        "models/digits-edge/4/manifest.json",
        "models/digits/",
    ]
    assert group_versions(keys, "digits") == {
        "2": {"claim.json", "manifest.json", "model.tflite"},
        "3": {"claim.json"},
    }
    assert prefix("digits", "2") == "models/digits/2/" and prefix("digits") == "models/digits/"
