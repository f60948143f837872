"""The valid scenario the hostile validate and CLI tests start from, and how they call the CLI."""

from linksim.cli import main

BASE = """\
name: hostile
dataset: {name: embedded, test_size: 8}
snr_db: [0, 10]
rate: {channel_uses: 486}
"""
#: A valid scenario: WebP + LDPC on the embedded images (no training).
GOOD = BASE + "schemes:\n  - {type: separation, codec: {type: webp}}\n"


def cli(capsys, *argv):
    """``(exit code, stdout, stderr)`` of ``linksim ARGV`` run in this process."""
    rc = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return rc, out, err


def validate(capsys, *paths):
    """``(exit code, stderr)`` of ``linksim validate PATHS``; never a traceback."""
    rc, _, err = cli(capsys, "validate", *paths)
    assert "Traceback" not in err
    return rc, err


def validate_text(capsys, tmp_path, text):
    """``(exit code, stderr)`` of ``linksim validate`` on a file holding ``text``."""
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return validate(capsys, p)
