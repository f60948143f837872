"""The shipped weights stay within the repository's budget (50 MB), and every shipped model is deflated."""

import zipfile
from pathlib import Path

import linksim

WEIGHTS = Path(linksim.__file__).parent / "weights"
BUDGET_BYTES = 50_000_000


def test_shipped_weights_fit_the_budget():
    total = sum(f.stat().st_size for f in WEIGHTS.rglob("*") if f.is_file())
    assert total < BUDGET_BYTES, f"linksim/weights holds {total / 1e6:.2f} MB, over the {BUDGET_BYTES / 1e6:.0f} MB"


def test_shipped_models_are_deflated():
    # linksim's store writes deflated archives (linksim.store.deflate_keras_file); a model copied in by hand
    # from an older store would waste about 15 % of its size
    stored = [f for f in WEIGHTS.glob("*/model.keras")
              if any(i.compress_type != zipfile.ZIP_DEFLATED for i in zipfile.ZipFile(f).infolist())]
    assert not stored, stored
