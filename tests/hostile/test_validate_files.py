"""Hostile scenario *files* given to ``linksim validate``: exit 2, a message naming the file, never a traceback.

Each case is small and fast (the whole hostile suite runs in seconds); the limits are
those of :mod:`linksim.limits` (docs/errors.md).
"""

import time

import pytest

from linksim import limits
from validate_helpers import GOOD, validate


def write(tmp_path, data, name="s.yaml"):
    p = tmp_path / name
    (p.write_bytes if isinstance(data, bytes) else p.write_text)(data)
    return p


def test_a_good_file_is_accepted(tmp_path, capsys):
    assert validate(capsys, write(tmp_path, GOOD))[0] == 0


def test_a_file_in_latin_1_is_not_utf8_text_with_its_line(tmp_path, capsys):
    p = write(tmp_path, (GOOD + "description: caf\xe9\n").encode("latin-1"))
    rc, err = validate(capsys, p)
    assert rc == 2 and f"{p}:7" in err and "not UTF-8" in err and "0xe9" in err


def test_binary_garbage_is_not_a_text_file(tmp_path, capsys):
    p = write(tmp_path, bytes(range(256)) * 4)
    rc, err = validate(capsys, p)
    assert rc == 2 and str(p) in err and "not a text file" in err


def test_an_endless_file_is_refused_at_once_without_reading_it_all(capsys):
    t = time.time()
    rc, err = validate(capsys, "/dev/zero")
    assert rc == 2 and "/dev/zero" in err and "limit" in err
    assert time.time() - t < 5


def test_a_file_larger_than_the_limit_is_refused(tmp_path, capsys):
    p = write(tmp_path, GOOD + "#" * (limits.MAX_SCENARIO_BYTES + 10) + "\n")
    rc, err = validate(capsys, p)
    assert rc == 2 and str(p) in err and f"{limits.MAX_SCENARIO_BYTES:,}-byte limit" in err


def test_a_yaml_alias_bomb_is_refused_without_expanding_it(tmp_path, capsys):
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for i, name in enumerate("bcdefgh"):
        bomb += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    p = write(tmp_path, GOOD + "description: x\n" + "quick: {}\n" + bomb.replace("\n", "\n", 1))
    t = time.time()
    rc, err = validate(capsys, p)
    assert rc == 2 and str(p) in err and "alias" in err
    assert time.time() - t < 5


def test_a_bomb_with_few_aliases_is_refused_by_its_expanded_size(tmp_path, capsys):
    lines = ["x0: &x0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    for i in range(1, 9):   # 8 levels of 10 aliases each = 80 aliases, 10^9 values expanded
        lines.append(f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]")
    p = write(tmp_path, "\n".join(lines) + "\n")
    rc, err = validate(capsys, p)
    assert rc == 2 and str(p) in err and "expand to more than" in err


def test_too_many_aliases_are_refused_with_the_line(tmp_path, capsys):
    body = GOOD + "plots: &p [psnr_vs_snr]\n" + "".join(f"k{i}: *p\n" for i in range(limits.MAX_YAML_ALIASES + 1))
    rc, err = validate(capsys, write(tmp_path, body))
    assert rc == 2 and f"more than {limits.MAX_YAML_ALIASES} YAML aliases" in err and "s.yaml:" in err


def test_nesting_deeper_than_the_limit_is_refused(tmp_path, capsys):
    p = write(tmp_path, GOOD + "description: " + "[" * 5000 + "]" * 5000 + "\n")
    rc, err = validate(capsys, p)
    assert rc == 2 and str(p) in err and "nested deeper" in err


def test_a_top_level_list_says_the_document_must_be_a_mapping(tmp_path, capsys):
    rc, err = validate(capsys, write(tmp_path, "- a\n- b\n"))
    assert rc == 2 and "must be a mapping" in err


def test_a_folder_is_not_a_scenario_file(tmp_path, capsys):
    rc, err = validate(capsys, tmp_path)
    assert rc == 2 and str(tmp_path) in err and "is a folder" in err


def test_a_missing_file_is_named(tmp_path, capsys):
    rc, err = validate(capsys, tmp_path / "nope.yaml")
    assert rc == 2 and "nope.yaml" in err and "file not found" in err


def test_a_yaml_syntax_error_gives_its_line(tmp_path, capsys):
    rc, err = validate(capsys, write(tmp_path, GOOD + "snr_db: [0, 1\n"))
    assert rc == 2 and "YAML syntax error" in err and "s.yaml:" in err


def test_a_recursive_alias_is_refused(tmp_path, capsys):
    rc, err = validate(capsys, write(tmp_path, GOOD.replace("snr_db: [0, 10]", "snr_db: &s [0, *s]")))
    assert rc == 2 and "s.yaml:3" in err and "recursive" in err


def test_a_utf8_file_with_a_byte_order_mark_is_accepted(tmp_path, capsys):
    assert validate(capsys, write(tmp_path, "\ufeff" + GOOD + "description: café ✓\n"))[0] == 0


def test_a_file_that_cannot_be_read_is_named(tmp_path, capsys):
    import os

    p = write(tmp_path, GOOD)
    os.chmod(p, 0)
    if os.access(p, os.R_OK):   # root reads anything
        pytest.skip("running as root")
    rc, err = validate(capsys, p)
    assert rc == 2 and str(p) in err and "cannot read" in err


@pytest.mark.parametrize("text, field", [
    (GOOD + "1: x\n", None),
    (GOOD.replace("rate: {channel_uses: 486}", "rate: {channel_uses: 486, 7: 1}"), "rate"),
    (GOOD.replace("{type: separation, codec: {type: webp}}", "{type: deepjscc, 1: 2, bogus: 3}"), "schemes[0]"),
])
def test_keys_that_are_not_strings_are_reported_not_traced(tmp_path, capsys, text, field):
    rc, err = validate(capsys, write(tmp_path, text))
    assert rc == 2 and "s.yaml:" in err and ("unknown field" in err or "no option(s)" in err)
    if field:
        assert f"field '{field}" in err


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path, capsys):
    # YAML parsers silently keep the last value; the user meant one of them
    rc, err = validate(capsys, write(tmp_path, GOOD + "name: again\n"))
    assert rc == 2 and "s.yaml:7" in err and "'name' appears twice" in err and "first on line 1" in err
    rc, err = validate(capsys, write(tmp_path, GOOD.replace("{type: webp}", "{type: webp, type: jpeg}")))
    assert rc == 2 and "s.yaml:6" in err and "'type' appears twice" in err


def test_a_key_a_merge_overrides_is_not_a_duplicate(tmp_path, capsys):
    text = GOOD.replace("  - {type: separation, codec: {type: webp}}",
                        "  - &s {type: separation, codec: {type: webp}}\n  - {<<: *s, label: other, codec: {type: jpeg}}")
    assert validate(capsys, write(tmp_path, text))[0] == 0


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_an_empty_file_says_it_is_empty(tmp_path, capsys, text):
    rc, err = validate(capsys, write(tmp_path, text))
    assert rc == 2 and "s.yaml:1" in err and "the file is empty" in err


def test_a_named_pipe_without_a_writer_does_not_hang(tmp_path, capsys):
    import os

    fifo = tmp_path / "s.yaml"
    os.mkfifo(fifo)
    t = time.time()
    rc, err = validate(capsys, fifo)
    assert rc == 2 and "the file is empty" in err and time.time() - t < 5


def test_a_number_written_1e_minus_3_is_a_number_as_in_yaml_1_2(tmp_path, capsys):
    # PyYAML (YAML 1.1) alone reads 1e-3 as the text "1e-3"
    from linksim.scenario import load_scenario

    p = write(tmp_path, GOOD.replace("{type: separation, codec: {type: webp}}", "{type: deepjscc, learning_rate: 1e-3}"))
    assert validate(capsys, p)[0] == 0
    assert load_scenario(p).schemes[0]["learning_rate"] == 0.001


@pytest.mark.parametrize("value", ['!!python/object/apply:os.system ["echo pwned"]', "!snr 5"])
def test_a_python_object_or_custom_yaml_tag_is_refused_and_never_constructed(tmp_path, capsys, value):
    rc, err = validate(capsys, write(tmp_path, GOOD + f"description: {value}\n"))
    assert rc == 2 and "s.yaml:7" in err and "is not allowed: a scenario holds plain data" in err, err
    assert "pwned" not in capsys.readouterr().out
