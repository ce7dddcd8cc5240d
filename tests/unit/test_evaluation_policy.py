"""The retrain policy: triggers, the sample-size guard, configuration errors."""

from __future__ import annotations

import pytest
from liteserve.evaluation.policy import RetrainPolicy, decide


def test_no_decision_below_the_minimum_labelled_count():
    d = decide(RetrainPolicy(min_labelled=500), 499, 0.5, 0.98, True, 1.0)
    assert d.retrain is False and "499" in d.reasons[0]


@pytest.mark.parametrize(
    ("accuracy", "drift", "expected"),
    [
        (0.97, False, []),
        (0.89, False, ["below the floor", "dropped"]),
        (0.94, False, ["dropped"]),
        (0.97, True, ["dataset drift"]),
    ],
)
def test_each_trigger(accuracy, drift, expected):
    d = decide(RetrainPolicy(), 600, accuracy, 0.98, drift, 0.5 if drift else 0.0)
    assert d.retrain is bool(expected)
    assert len(d.reasons) == len(expected)
    for reason, word in zip(d.reasons, expected, strict=True):
        assert word in reason


def test_drift_trigger_can_be_switched_off_and_policy_parses_from_env(monkeypatch):
    monkeypatch.setenv(
        "LITESERVE_RETRAIN_POLICY", '{"on_dataset_drift": false, "min_labelled": 10, "drift": {"psi": 0.5}}'
    )
    policy = RetrainPolicy.from_env()
    assert policy.min_labelled == 10 and policy.drift.psi == 0.5 and policy.drift.js == 0.2
    assert decide(policy, 100, 0.97, 0.98, True, 1.0).retrain is False
    assert policy.as_dict()["drift"]["psi"] == 0.5


def test_unknown_keys_are_refused():
    with pytest.raises(ValueError, match="accuracy_flor"):
        RetrainPolicy.from_dict({"accuracy_flor": 0.9})
    with pytest.raises(ValueError, match="psy"):
        RetrainPolicy.from_dict({"drift": {"psy": 0.2}})
