"""Keys pass through unchanged; bad and repeated keys are refused with their positions."""

import pytest
from liteserve.errors import BadRequest
from liteserve.keys import check_keys, key_field


def test_keys_are_returned_unchanged():
    keys = ["a", 7, "ü-ñ", "x" * 300]
    assert check_keys(keys) is keys


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["a", "b", "a"], "instance 2: key 'a' repeats instance 0"),
        ([1, 2, 1], "instance 2: key 1 repeats instance 0"),
        (["a", None], "instance 1: key must be a string or an integer, got NoneType"),
        (["a", True], "instance 1: key must be a string or an integer, got bool"),
        (["a", 1.5], "instance 1: key must be a string or an integer, got float"),
        (["a", ["b"]], "instance 1: key must be a string or an integer, got list"),
        (["a", ""], "instance 1: key must not be empty"),
    ],
)
def test_bad_keys(keys, message):
    with pytest.raises(BadRequest) as err:
        check_keys(keys)
    assert err.value.message.startswith(message)


def test_key_field_is_configurable(monkeypatch):
    assert key_field() == "key"
    monkeypatch.setenv("LITESERVE_KEY_FIELD", "id")
    assert key_field() == "id"
