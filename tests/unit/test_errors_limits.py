"""linksim.errors (which exceptions are user errors) and linksim.limits (the capped read, YAML bounds)."""

import pytest

from linksim import errors, limits


def test_user_errors_are_recognised_by_base_class_attribute_or_name():
    from linksim.registry import PluginError, UnknownNameError
    from linksim.scenario import ScenarioError

    class Mine(errors.UserError):
        pass

    class Flagged(RuntimeError):
        user_error = True

    for exc in (Mine("x"), Flagged("x"), ScenarioError("x"), PluginError("x"), UnknownNameError("scheme", "x", []),
                FileNotFoundError("x"), PermissionError("x")):
        assert errors.is_user_error(exc), exc
    for exc in (RuntimeError("x"), ValueError("x"), KeyError("x"), ZeroDivisionError()):
        assert not errors.is_user_error(exc), exc


def test_the_run_directory_and_data_set_errors_are_user_errors_by_name():
    from linksim.data.base import DatasetError

    assert errors.is_user_error(DatasetError("x"))
    assert "linksim.run.directory.RunError" in errors.USER_ERROR_NAMES


def test_the_capped_read_refuses_more_than_the_limit(tmp_path):
    p = tmp_path / "f"
    p.write_text("a" * 11)
    assert limits.read_text_capped(str(p), limit=11) == "a" * 11
    with pytest.raises(limits.LimitError, match="10-byte limit"):
        limits.read_text_capped(str(p), limit=10)


def test_yaml_within_the_limits_passes_and_a_bomb_does_not():
    limits.check_yaml_expansion("a: &x [1, 2]\nb: *x\nc: *x\n")
    bomb = "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{n}: &{n} [" + ",".join([f"*{p}"] * 10) + "]\n" for p, n in zip("abcdef", "bcdefg"))
    with pytest.raises(limits.LimitError, match="expand to more than"):
        limits.check_yaml_expansion(bomb)


def test_non_finite_numbers_are_found_with_their_paths():
    found = list(limits.non_finite_numbers({"a": [1.0, float("nan")], "b": {"c": float("-inf")}, "d": "nan"}))
    assert [p for p, _ in found] == [("a", 1), ("b", "c")]


def test_the_batch_memory_floor_grows_with_channel_uses_batch_and_hops():
    assert limits.batch_memory_bytes(1000, 10, 1) == 1000 * 10 * 8 * 8
    assert limits.batch_memory_bytes(1000, 10, 2) > limits.batch_memory_bytes(1000, 10, 1)
    assert limits.available_memory_bytes() is None or limits.available_memory_bytes() > 0
