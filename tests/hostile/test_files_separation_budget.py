"""Part 5: a separation scheme whose codec never fits the bit budget warns at the start of the run."""

import warnings

import numpy as np
import pytest
from files_helpers import run, scenario
from PIL import Image

JPEG = {"type": "separation", "label": "JPEG+LDPC", "codec": {"type": "jpeg"}}


def jpeg_scenario(headers):
    # embedded images are 28x28x1; 486 channel uses carry one LDPC (1944, 1458) codeword of
    # 16-QAM: about 1440 bits for the codec, less than any full JPEG file
    return scenario(rate={"channel_uses": 486}, snr_db=[20],
                    schemes=[{**JPEG, "codec": {"type": "jpeg", "headers": headers}}])


def test_the_issues_case_jpeg_full_headers_on_32x32_at_one_sixth_warns(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    yy, xx = np.mgrid[0:32, 0:32]
    for i in range(3):
        img = np.stack([xx * 8, yy * 8, (xx + yy + 10 * i) * 4], -1).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{i}.png")
    scen = scenario(dataset={"name": "image_folder", "test_size": 2, "params": {"path": str(d),
                                                                                "test_fraction": 0.67}},
                    rate={"bandwidth_ratio": 1 / 6}, snr_db=[20], schemes=[JPEG])
    with pytest.warns(UserWarning, match="JPEG\\+LDPC: no image fits the bit budget .*headers: abbreviated"):
        run(tmp_path / "run", scen, plots=False)


@pytest.fixture(scope="module")
def full_headers(tmp_path_factory):
    with pytest.warns(UserWarning, match="no image fits the bit budget") as rec:
        df = run(tmp_path_factory.mktemp("full") / "run", jpeg_scenario("full"), plots=False)
    return next(str(w.message) for w in rec if "no image fits" in str(w.message)), df


def test_jpeg_with_full_headers_warns_with_its_smallest_size_and_the_options(full_headers):
    msg, df = full_headers
    assert "JPEG+LDPC" in msg and "headers: abbreviated" in msg and "channel uses per image" in msg
    smallest = int(msg.split("is ")[1].split(" bits")[0])
    budget = int(msg.split("budget of ")[1].split(" bits")[0])
    assert smallest > budget
    assert (df["decode_failures"] == df["images"]).all() or (df["bpp"] == 0).all()


def test_a_codec_that_fits_gives_no_budget_warning(tmp_path):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        run(tmp_path / "run", jpeg_scenario("abbreviated"), plots=False)
    assert not [w for w in rec if "no image fits" in str(w.message)]


def test_the_rate_the_warning_names_does_fit(tmp_path, full_headers):
    msg = full_headers[0]
    k = int(msg.split("rate.channel_uses: ")[1].split(",")[0])
    scen = scenario(rate={"channel_uses": k}, snr_db=[20], schemes=[JPEG])
    with warnings.catch_warnings(record=True) as rec2:
        warnings.simplefilter("always")
        df = run(tmp_path / "b", scen, plots=False)
    assert not [w for w in rec2 if "no image fits" in str(w.message)]
    assert df["bpp"].iloc[0] > 0
