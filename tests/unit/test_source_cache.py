"""The source-coding cache: payloads on disk give exactly what encoding gives, and survive damage and races."""

import multiprocessing
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from linksim.codecs import BPGCodec, JPEG2000Codec, WebPCodec, encode_batch
from linksim.codecs import cache as source_cache
from linksim.codecs.cache import ENV_VAR, SourceCache, codec_key, image_digest
from linksim.store import SHIPPED_DIR, ModelStore

EMBEDDED = Path(__file__).resolve().parents[2] / "linksim" / "data" / "embedded" / "fashion_mnist_small.npz"


@pytest.fixture(autouse=True)
def _no_cache_from_the_environment(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def images():
    """12 embedded test images, [12, 28, 28, 1] uint8, and 4 RGB ones [4, 16, 16, 3] (seeded)."""
    with np.load(EMBEDDED) as d:
        grey = d["x_test"][:12].copy()
    rgb = np.random.default_rng(0).integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)
    return grey, rgb


def _counting(codec, monkeypatch):
    """Count the codec's encode calls."""
    calls = []
    real = codec.encode

    def encode(image, quality):
        calls.append(quality)
        return real(image, quality)

    monkeypatch.setattr(codec, "encode", encode)
    return calls


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.lsc"))


@pytest.mark.parametrize("make", [lambda: BPGCodec(headers="abbreviated"), WebPCodec, JPEG2000Codec],
                         ids=["bpg-abbreviated", "webp", "jpeg2000"])
def test_a_cache_hit_returns_exactly_the_payloads_encoding_gives(images, tmp_path, make):
    grey, rgb = images
    for batch, budget in ((grey, 1442), (rgb, 2000)):
        plain = encode_batch(make(), batch, budget, cache=False)
        with source_cache.activated(tmp_path) as cache:
            first = encode_batch(make(), batch, budget)
        with source_cache.activated(tmp_path) as cache:
            second = encode_batch(make(), batch, budget)
        assert first == plain and second == plain  # payload bytes, bits and quality
        assert cache.hits > 0 and cache.misses == 0


def test_a_second_encode_batch_with_a_cold_memo_encodes_nothing(images, tmp_path, monkeypatch):
    grey, _ = images
    with source_cache.activated(tmp_path):
        codec = WebPCodec()
        calls = _counting(codec, monkeypatch)
        encode_batch(codec, grey, 1442)
        assert calls, "the first call encodes"
        fresh = WebPCodec()  # a new object: its in-memory memo is empty
        calls = _counting(fresh, monkeypatch)
        encode_batch(fresh, grey, 1442)
        assert calls == []


def test_another_budget_encodes_only_qualities_no_earlier_search_visited(images, tmp_path, monkeypatch):
    grey, _ = images
    with source_cache.activated(tmp_path):
        encode_batch(WebPCodec(), grey, 1442)
        codec = WebPCodec()
        calls = _counting(codec, monkeypatch)
        got = encode_batch(codec, grey, 2400)
    assert got == encode_batch(WebPCodec(), grey, 2400, cache=False)
    assert 0 < len(calls) < 8 * len(grey)  # a cold search visits about 7 qualities per image


def test_options_and_codec_version_change_the_key_and_budget_does_not_mix_results(images, tmp_path):
    grey, _ = images
    keys = {codec_key(BPGCodec()), codec_key(BPGCodec(headers="abbreviated")), codec_key(BPGCodec(preset="fast")),
            codec_key(WebPCodec()), codec_key(WebPCodec(method=4))}
    assert len(keys) == 5
    assert codec_key(BPGCodec()) == codec_key(BPGCodec())

    class NewerWebP(WebPCodec):
        cache_version = "2"

    assert codec_key(NewerWebP()) != codec_key(WebPCodec())
    with source_cache.activated(tmp_path):
        by_budget = {b: encode_batch(WebPCodec(), grey, b) for b in (1200, 1442, 2400)}
        abbreviated = encode_batch(BPGCodec(headers="abbreviated"), grey[:3], 1442)
        full = encode_batch(BPGCodec(), grey[:3], 1442)
    for b, got in by_budget.items():
        assert got == encode_batch(WebPCodec(), grey, b, cache=False)
        assert all(e.bits <= b for e in got)
    assert abbreviated != full  # different options are different entries
    assert full == encode_batch(BPGCodec(), grey[:3], 1442, cache=False)
    assert image_digest(grey[0]) != image_digest(grey[0].astype(np.int8))  # dtype is part of the key
    assert image_digest(grey[0]) != image_digest(grey[0].reshape(28, 1, 28))  # so is the shape


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage", "empty", "another_image"])
def test_a_damaged_entry_is_ignored_recomputed_and_rewritten(images, tmp_path, damage):
    grey, _ = images
    plain = encode_batch(WebPCodec(), grey[:2], 1442, cache=False)
    with source_cache.activated(tmp_path):
        encode_batch(WebPCodec(), grey[:2], 1442)
    entry = SourceCache(tmp_path).entry_path(codec_key(WebPCodec()), image_digest(grey[0]))
    other = SourceCache(tmp_path).entry_path(codec_key(WebPCodec()), image_digest(grey[1]))
    data = entry.read_bytes()
    broken = {"truncated": data[: len(data) // 2], "flipped": data[:40] + bytes([data[40] ^ 1]) + data[41:],
              "garbage": b"\x00" * len(data), "empty": b"", "another_image": other.read_bytes()}[damage]
    entry.write_bytes(broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with source_cache.activated(tmp_path) as cache:
            got = encode_batch(WebPCodec(), grey[:2], 1442)
    assert got == plain
    if damage != "empty":
        assert cache.stats()["damaged"] == 1
        assert sum("damaged entry" in str(w.message) for w in caught) == 1
    assert cache.misses > 0 and cache.stats()["entries_written"] == 1
    with source_cache.activated(tmp_path) as cache:  # rewritten intact
        assert encode_batch(WebPCodec(), grey[:2], 1442) == plain
    assert cache.misses == 0 and cache.stats()["damaged"] == 0


def _worker(folder: str, budget: int, seed: int) -> None:
    """One of two processes filling the same cache (spawned: a fresh interpreter)."""
    with np.load(EMBEDDED) as d:
        grey = d["x_test"][:16].copy()
    order = np.random.default_rng(seed).permutation(len(grey))
    with source_cache.activated(folder):
        for _ in range(8):  # several rounds, so that writes of the same entries interleave
            encode_batch(WebPCodec(), grey[order], budget)
            encode_batch(WebPCodec(), grey[order], budget + 600)
            budget += 97


def test_two_processes_writing_concurrently_leave_a_consistent_cache(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), b, s)) for b, s in ((1200, 1), (1300, 2))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    with np.load(EMBEDDED) as d:
        grey = d["x_test"][:16].copy()
    assert len(_entries(tmp_path)) == len(grey)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # no temporary file left
    codec, cache = WebPCodec(), SourceCache(tmp_path)
    for img in grey:
        cached = cache.load(codec, image_digest(img))
        assert cached and all(codec.encode(img, q) == p for q, p in cached.items())
    assert cache.stats()["damaged"] == 0


def test_the_environment_variable_turns_the_cache_off_or_names_its_folder(images, tmp_path, monkeypatch):
    grey, _ = images
    assert source_cache.active() is None  # library use: no disk cache by default
    monkeypatch.setenv(ENV_VAR, "off")
    with source_cache.activated(tmp_path / "run") as cache:
        assert cache is None
        encode_batch(WebPCodec(), grey[:2], 1442)
    assert not (tmp_path / "run").exists()
    assert source_cache.cache_dir_for_run(ModelStore([tmp_path]), tmp_path) is None
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    encode_batch(WebPCodec(), grey[:2], 1442)
    assert len(_entries(tmp_path / "env")) == 2
    assert source_cache.stats()["path"] == str(tmp_path / "env")
    assert source_cache.cache_dir_for_run(ModelStore([tmp_path]), tmp_path) == tmp_path / "env"


def test_a_run_caches_in_an_existing_store_else_in_its_run_directory(tmp_path):
    store, run_dir = tmp_path / "store", tmp_path / "run"
    where = source_cache.cache_dir_for_run(ModelStore([store, SHIPPED_DIR]), run_dir)
    assert where == run_dir / ".source_cache"  # a fresh clone: the store is not created for the cache
    assert not store.exists()
    store.mkdir()
    assert source_cache.cache_dir_for_run(ModelStore([store, SHIPPED_DIR]), run_dir) == store / "source_cache"
    assert source_cache.cache_dir_for_run(ModelStore([SHIPPED_DIR]), run_dir) == run_dir / ".source_cache"
    assert source_cache.cache_dir_for_run(ModelStore([SHIPPED_DIR])) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"] and not any(store.iterdir())


def test_a_folder_that_cannot_be_written_warns_once_and_rate_control_goes_on(images, tmp_path):
    grey, _ = images
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.warns(UserWarning, match="cannot be written") as caught:
        with source_cache.activated(blocker / "cache") as cache:
            got = encode_batch(WebPCodec(), grey[:3], 1442)
    assert got == encode_batch(WebPCodec(), grey[:3], 1442, cache=False)
    assert sum("cannot be written" in str(w.message) for w in caught) == 1
    assert cache.stats()["write_errors"] == 3


def test_smallest_payload_bits_uses_the_cache(images, tmp_path, monkeypatch):
    grey, _ = images
    with source_cache.activated(tmp_path):
        bits = WebPCodec().smallest_payload_bits(grey[0])
        codec = WebPCodec()
        calls = _counting(codec, monkeypatch)
        assert codec.smallest_payload_bits(grey[0]) == bits and calls == []


def test_an_exported_cache_reaches_worker_processes_through_the_environment(tmp_path):
    with source_cache.activated(tmp_path, export=True) as cache:
        assert os.environ[ENV_VAR] == str(tmp_path) and source_cache.active() is cache
    assert ENV_VAR not in os.environ and source_cache.active() is None


def test_the_separation_transmitter_with_the_ideal_code_reuses_the_cache_at_every_snr(images, tmp_path):
    from linksim.schemes.separation import SeparationTransmitter

    grey, _ = images
    x = grey[:6].astype(np.float32) / 255.0

    def transmitter():
        return SeparationTransmitter({"type": "webp"}, {"type": "ideal"}, {"type": "qam", "num_bits_per_symbol": 4},
                                     486)

    plain = [transmitter().source_encode(x, snr) for snr in (0.0, 10.0, 20.0)]
    with source_cache.activated(tmp_path):
        first = [transmitter().source_encode(x, snr) for snr in (0.0, 10.0, 20.0)]
    with source_cache.activated(tmp_path) as cache:  # a re-run: a new transmitter, a cold memo
        tx = transmitter()
        again = [tx.source_encode(x, snr) for snr in (0.0, 10.0, 20.0)]
    assert plain == first == again
    assert cache.misses == 0 and cache.hits > 0
