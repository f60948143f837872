"""Data sets: the embedded default, seeded subsets, image options, the file loaders, clear errors offline."""

import gzip
import hashlib
import os
import pickle
import re
import struct
import tarfile

import numpy as np
import pytest
from PIL import Image

from linksim.data import get_dataset
from linksim.data import published
from linksim.data.base import DatasetError, as_tf_dataset, select_subset, stratified_order, to_float
from linksim.data.cifar10 import CIFAR10
from linksim.data.embedded import EMBEDDED_FILE
from linksim.data.mnist import FashionMNIST, MNIST, read_idx
from linksim.data.transforms import resize
from linksim.registry import UnknownNameError

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.fixture
def offline(monkeypatch):
    """No default folders, and a Keras downloader that fails as it does without a network."""
    calls = []

    def no_network(name):
        calls.append(name)
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(published, "keras_load_data", no_network)
    for cls in (CIFAR10, MNIST, FashionMNIST):
        monkeypatch.setattr(cls, "search_dirs", ())
    return calls


# ------------------------------------------------------------------ embedded set
def test_embedded_set_holds_9000_train_and_1000_test_balanced_fashion_mnist_images():
    ds = get_dataset("embedded")
    assert ds.name == "embedded" and ds.num_classes == 10 and ds.image_shape == (28, 28, 1)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    for split, n in (("train", 9000), ("test", 1000)):
        x, y = ds.load(split)
        assert x.shape == (n, 28, 28, 1) and x.dtype == np.uint8
        assert y.shape == (n,) and y.dtype == np.int64
        assert x.min() == 0 and x.max() == 255 and 40 < x.mean() < 120
        assert np.array_equal(np.bincount(y, minlength=10), np.full(10, n // 10))


def test_embedded_file_is_small_and_matches_the_sha256_in_its_readme():
    readme = (EMBEDDED_FILE.parent / "README.md").read_text()
    sha = re.search(r"sha256: `([0-9a-f]{64})`", readme).group(1)
    data = EMBEDDED_FILE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha
    assert len(data) < 5_000_000
    assert "MIT" in readme and "Zalando" in readme


@pytest.mark.skipif(not os.path.isdir(DEBIAN_FASHION), reason="Debian's dataset-fashion-mnist is not installed")
def test_embedded_test_images_are_the_official_fashion_mnist_images_at_their_recorded_indices():
    with np.load(EMBEDDED_FILE) as f:
        index, x, y = f["index_test"], f["x_test"], f["y_test"]
    official_x = read_idx(os.path.join(DEBIAN_FASHION, "t10k-images-idx3-ubyte.gz"))
    official_y = read_idx(os.path.join(DEBIAN_FASHION, "t10k-labels-idx1-ubyte.gz"))
    assert np.all(np.diff(index) > 0)
    assert np.array_equal(x[..., 0], official_x[index]) and np.array_equal(y, official_y[index])


def test_fashion_mnist_small_is_an_alias_of_the_embedded_set():
    a, _ = get_dataset("fashion_mnist_small").load("test", 10, seed=2)
    b, _ = get_dataset("embedded").load("test", 10, seed=2)
    assert np.array_equal(a, b)


# --------------------------------------------------------------------- subsets
def test_a_seeded_subset_is_deterministic_stratified_and_nested():
    ds = get_dataset("embedded")
    x1, y1 = ds.load("test", 50, seed=3)
    x2, y2 = ds.load("test", 50, seed=3)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert np.array_equal(np.bincount(y1, minlength=10), np.full(10, 5))
    x3, _ = ds.load("test", 50, seed=4)
    assert not np.array_equal(x1, x3)
    _, labels = ds.load("test")
    idx_small, idx_large = select_subset(labels, 20, seed=3), select_subset(labels, 50, seed=3)
    assert set(idx_small) <= set(idx_large)


def test_a_subset_keeps_the_class_proportions_of_unbalanced_labels():
    labels = np.repeat([0, 1, 2], [700, 200, 100])
    for seed in range(5):
        idx = select_subset(labels, 10, seed)
        assert np.array_equal(np.bincount(labels[idx]), [7, 2, 1])
        assert np.all(np.diff(idx) > 0)


def test_stratified_order_of_unlabelled_items_is_a_seeded_permutation():
    labels = -np.ones(30, np.int64)
    a, b = stratified_order(labels, 1), stratified_order(labels, 1)
    assert np.array_equal(a, b) and sorted(a) == list(range(30))
    assert not np.array_equal(a, stratified_order(labels, 2))


def test_size_none_returns_the_whole_split_in_stored_order():
    ds = get_dataset("embedded")
    x, y = ds.load("test")
    with np.load(EMBEDDED_FILE) as f:
        assert np.array_equal(x, f["x_test"]) and np.array_equal(y, f["y_test"])


def test_asking_for_more_images_than_a_split_holds_names_both_numbers():
    with pytest.raises(DatasetError, match=r"1001 test images.*only 1000.*dataset.test_size"):
        get_dataset("embedded").load("test", 1001)


def test_a_bad_split_or_size_is_refused_with_the_allowed_values():
    ds = get_dataset("embedded")
    with pytest.raises(ValueError, match="'train', 'test'"):
        ds.load("validation", 10)
    with pytest.raises(ValueError, match="non-negative"):
        ds.load("test", -1)


# ------------------------------------------------------------------ transforms
def test_pad_to_zero_pads_the_images_centrally():
    x, _ = get_dataset("embedded").load("test", 8, seed=0)
    xp, _ = get_dataset("embedded", pad_to=[32, 32]).load("test", 8, seed=0)
    assert xp.shape == (8, 32, 32, 1)
    assert np.array_equal(xp[:, 2:30, 2:30], x)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert not xp[:, border].any()


def test_pad_to_smaller_than_the_images_is_refused():
    with pytest.raises(DatasetError, match="pad_to .* smaller than the images"):
        get_dataset("embedded", pad_to=[24, 32])


def test_channels_converts_grey_to_rgb_and_rgb_back_to_grey():
    x, _ = get_dataset("embedded").load("test", 4, seed=0)
    rgb, _ = get_dataset("embedded", channels=3).load("test", 4, seed=0)
    assert rgb.shape == (4, 28, 28, 3) and all(np.array_equal(rgb[..., c:c + 1], x) for c in range(3))
    colour = np.zeros((1, 2, 2, 3), np.uint8)
    colour[..., 0] = 255
    from linksim.data.transforms import convert_channels

    assert convert_channels(colour, 1)[0, 0, 0, 0] == 76  # 0.299 * 255


def test_image_size_resizes_with_antialiasing():
    checker = ((np.indices((32, 32)).sum(0) % 2) * 255).astype(np.uint8)[..., None]
    small = resize(checker, (8, 8))
    assert small.shape == (8, 8, 1)
    assert np.all(np.abs(small.astype(int) - 128) <= 8)  # averaged, not aliased to 0 or 255
    x, _ = get_dataset("embedded", image_size=[14, 20], pad_to=[16, 24]).load("test", 3)
    assert x.shape == (3, 16, 24, 1)


@pytest.mark.parametrize("option, value, allowed", [
    ("channels", 2, "1 .grey. or 3 .RGB."),
    ("image_size", [0, 5], r"\[H, W\], two positive integers"),
    ("pad_to", 32, r"\[H, W\]"),
])
def test_an_invalid_option_value_names_the_allowed_values(option, value, allowed):
    with pytest.raises(DatasetError, match=allowed):
        get_dataset("embedded", **{option: value})


def test_an_unknown_option_is_a_type_error_listing_the_options():
    with pytest.raises(TypeError, match="no option.s. colour .*image_size, pad_to, channels"):
        get_dataset("embedded", colour=True)


def test_unknown_dataset_name_lists_valid_names(monkeypatch):
    # keep the lookup independent of the other components the registry would import
    monkeypatch.setattr("linksim.registry._load_builtin_components", lambda: None)
    with pytest.raises(UnknownNameError) as exc:
        get_dataset("cifar100")
    msg = str(exc.value)
    for name in ("embedded", "image_folder", "cifar10", "mnist", "fashion_mnist"):
        assert name in msg
    assert "Did you mean 'cifar10'" in msg


# ----------------------------------------------------------------- image folder
def _png(path, size, value, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[0], size[1], 3) if mode == "RGB" else size
    Image.fromarray(np.full(shape, value, np.uint8), mode=mode).save(path)


def test_image_folder_labels_images_by_class_sub_folder_and_splits_them_stratified(tmp_path):
    for i in range(5):
        _png(tmp_path / "cats" / f"c{i}.png", (8, 6), (200, 10, 10))
        _png(tmp_path / "dogs" / f"d{i}.jpg", (8, 6), (10, 10, 200))
    ds = get_dataset("image_folder", path=str(tmp_path), test_fraction=0.2)
    assert ds.class_names == ("cats", "dogs") and ds.num_classes == 2 and ds.image_shape == (8, 6, 3)
    x, y = ds.load("test")
    assert ds.count("train") == 8 and sorted(y) == [0, 1]
    xt, yt = ds.load("train", 4, seed=1)
    for images, labels in ((x, y), (xt, yt)):
        assert np.all((images[..., 0].mean((1, 2)) > 100) == (labels == 0))  # red cats, blue dogs
    assert set(map(str, ds.files("test"))).isdisjoint(map(str, ds.files("train")))


def test_image_folder_without_class_folders_is_unlabelled_and_uses_train_test_folders(tmp_path):
    for i in range(3):
        _png(tmp_path / "train" / f"a{i}.png", (5, 7), 40 + i, mode="L")
    _png(tmp_path / "test" / "b.png", (5, 7), 90, mode="L")
    ds = get_dataset("image_folder", path=tmp_path)
    assert ds.num_classes == 0 and ds.class_names == () and ds.image_shape == (5, 7, 1)
    x, y = ds.load("test")
    assert x.shape == (1, 5, 7, 1) and x[0, 0, 0, 0] == 90 and y.tolist() == [-1]
    x, _ = get_dataset("image_folder", path=tmp_path, channels=3, pad_to=[9, 9]).load("train")
    assert x.shape == (3, 9, 9, 3)


def test_image_folder_with_mixed_sizes_needs_image_size_and_names_the_sizes(tmp_path):
    _png(tmp_path / "kodim01.png", (12, 18), 10)
    _png(tmp_path / "kodim04.png", (18, 12), 20)
    with pytest.raises(DatasetError) as exc:
        get_dataset("image_folder", path=tmp_path)
    assert "12x18" in str(exc.value) and "18x12" in str(exc.value) and "image_size" in str(exc.value)
    ds = get_dataset("image_folder", path=tmp_path, image_size=[8, 8], test_fraction=1.0)
    x, y = ds.load("test")
    assert x.shape == (2, 8, 8, 3) and ds.count("train") == 0
    assert ds.load("train")[0].shape == (0, 8, 8, 3)


def test_image_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(DatasetError, match="image folder not found: .*nowhere"):
        get_dataset("image_folder", path=tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no images found in"):
        get_dataset("image_folder", path=tmp_path)
    _png(tmp_path / "loose.png", (4, 4), 1)
    _png(tmp_path / "cls" / "a.png", (4, 4), 1)
    with pytest.raises(DatasetError, match=r"holds images directly .* and in sub-folders"):
        get_dataset("image_folder", path=tmp_path)
    with pytest.raises(DatasetError, match=r"test_fraction must be a number in \[0, 1\]"):
        get_dataset("image_folder", path=tmp_path, test_fraction=1.5)


# ---------------------------------------------------------------------- CIFAR-10
def _cifar_batch(path, n, first_label):
    data = np.zeros((n, 3072), np.uint8)
    for i in range(n):
        data[i, :1024] = i + 1       # red plane
        data[i, 1024:2048] = 100     # green plane
        data[i, 2048] = 7            # top-left blue pixel
    labels = [(first_label + i) % 10 for i in range(n)]
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"fake", b"labels": labels, b"data": data,
                     b"filenames": [b"x.png"] * n}, f)


def _fake_cifar(root):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(1, 6):
        _cifar_batch(folder / f"data_batch_{b}", 2, b)
    _cifar_batch(folder / "test_batch", 3, 0)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in CIFAR10.class_names], b"num_vis": 3072}, f)
    return folder


@pytest.mark.parametrize("where", ["parent", "folder", "archive"])
def test_cifar10_reads_the_standard_pickled_batches(tmp_path, where, offline):
    folder = _fake_cifar(tmp_path / "data")
    path = {"parent": folder.parent, "folder": folder}.get(where)
    if where == "archive":
        path = tmp_path / "cifar-10-python.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            tar.add(folder, arcname="cifar-10-batches-py")
    ds = get_dataset("cifar10", path=str(path))
    x, y = ds.load("test")
    assert x.shape == (3, 32, 32, 3) and ds.image_shape == (32, 32, 3)
    assert x[:, 5, 9, 0].tolist() == [1, 2, 3] and np.all(x[..., 1] == 100)
    assert x[0, 0, 0, 2] == 7 and x[0, 0, 1, 2] == 0  # the blue plane is row-major
    assert y.tolist() == [0, 1, 2]
    xt, yt = ds.load("train")
    assert xt.shape == (10, 32, 32, 3) and yt.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert offline == []


def test_cifar10_names_a_missing_batch_and_where_it_belongs(tmp_path):
    folder = _fake_cifar(tmp_path)
    (folder / "test_batch").unlink()
    ds = get_dataset("cifar10", path=tmp_path)
    with pytest.raises(DatasetError, match=r"test_batch missing in .*cifar-10-batches-py.*params: \{path: "):
        ds.load("test")


def test_cifar10_refuses_a_pickle_that_would_run_code(tmp_path):
    folder = _fake_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(DatasetError, match="not allowed"):
        get_dataset("cifar10", path=folder).load("test")


# ------------------------------------------------------------- MNIST IDX files
def _idx(path, array, gz):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_loader_reads_tiny_idx_files(tmp_path, gz, name, offline):
    rng = np.random.default_rng(0)
    sfx = ".gz" if gz else ""
    arrays = {}
    for prefix, n in (("train", 6), ("t10k", 4)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        _idx(tmp_path / f"{prefix}-images-idx3-ubyte{sfx}", x, gz)
        _idx(tmp_path / f"{prefix}-labels-idx1-ubyte{sfx}", y, gz)
        arrays[prefix] = (x, y)
    ds = get_dataset(name, path=tmp_path)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = ds.load(split)
        assert x.shape == (len(arrays[prefix][0]), 28, 28, 1) and y.dtype == np.int64
        assert np.array_equal(x[..., 0], arrays[prefix][0]) and np.array_equal(y, arrays[prefix][1])
    assert ds.source == str(tmp_path) and offline == []


def test_a_truncated_idx_file_is_named(tmp_path):
    p = tmp_path / "t10k-images-idx3-ubyte"
    _idx(p, np.zeros((2, 28, 28), np.uint8), gz=False)
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.*truncated"):
        read_idx(p)


def test_a_missing_idx_file_is_named_with_where_it_belongs(tmp_path):
    _idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8), gz=True)
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(2, np.uint8), gz=True)
    ds = get_dataset("mnist", path=tmp_path)
    assert ds.load("train")[0].shape == (2, 28, 28, 1)
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\[.gz\] and t10k-labels-idx1-ubyte\[.gz\] missing"):
        ds.load("test")


@pytest.mark.skipif(not os.path.isdir(DEBIAN_FASHION), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_reads_debians_files_by_default(monkeypatch):
    monkeypatch.setattr(published, "keras_load_data", lambda name: pytest.fail("must not download"))
    ds = get_dataset("fashion_mnist")
    x, y = ds.load("test", 20, seed=0)
    assert x.shape == (20, 28, 28, 1) and ds.source == DEBIAN_FASHION
    assert np.array_equal(np.bincount(y, minlength=10), np.full(10, 2))


# ------------------------------------------------------- offline, no files
@pytest.mark.parametrize("name, files", [
    ("cifar10", ["data_batch_1", "test_batch", "cifar-10-batches-py", "cifar-10-python.tar.gz"]),
    ("mnist", ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]),
    ("fashion_mnist", ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "dataset-fashion-mnist"]),
])
def test_offline_without_files_gives_a_clear_error(name, files, offline):
    ds = get_dataset(name)
    with pytest.raises(DatasetError) as exc:
        ds.load("test", 10)
    msg = str(exc.value)
    for f in files:
        assert f in msg
    assert "path: DIR" in msg and "Temporary failure in name resolution" in msg
    assert offline == [name]


def test_download_false_never_calls_the_downloader(offline):
    with pytest.raises(DatasetError, match="download: false"):
        get_dataset("cifar10", download=False).load("test")
    assert offline == []


def test_a_given_path_without_the_files_is_refused_at_once(tmp_path, offline):
    with pytest.raises(DatasetError, match=r"no CIFAR-10 files in .*data_batch_1"):
        get_dataset("cifar10", path=tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        get_dataset("mnist", path=tmp_path / "missing")
    assert offline == []


def test_the_keras_downloader_is_used_when_no_files_are_found(monkeypatch, offline):
    x = np.arange(5 * 32 * 32 * 3, dtype=np.int64).reshape(5, 32, 32, 3) % 256
    monkeypatch.setattr(published, "keras_load_data",
                        lambda name: ((x.astype(np.uint8), np.arange(5)[:, None] % 10),
                                      (x[:2].astype(np.uint8), np.array([[3], [4]]))))
    ds = get_dataset("cifar10", channels=1)
    xt, yt = ds.load("test")
    assert ds.source == "keras" and xt.shape == (2, 32, 32, 1) and yt.tolist() == [3, 4]


# --------------------------------------------------------------- float and TF
def test_to_float_maps_uint8_to_unit_float32():
    x = to_float(np.array([0, 51, 255], np.uint8))
    assert x.dtype == np.float32 and np.allclose(x, [0.0, 0.2, 1.0])
    with pytest.raises(TypeError, match="uint8"):
        to_float(np.array([1, 2], np.int32))


def test_as_tf_dataset_yields_float32_batches_in_unit_range():
    x, y = get_dataset("embedded").load("test", 10, seed=0)
    batches = list(as_tf_dataset(x, y, batch_size=4, shuffle=True, seed=1))
    assert [int(b[0].shape[0]) for b in batches] == [4, 4, 2]
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert images.dtype == np.float32 and images.min() >= 0.0 and images.max() <= 1.0
    assert sorted(labels.tolist()) == sorted(y.tolist())
    only = next(iter(as_tf_dataset(x, batch_size=10)))
    assert np.allclose(only.numpy(), to_float(x))
    with pytest.raises(ValueError, match="batch_size"):
        as_tf_dataset(x, batch_size=0)


def test_get_config_rebuilds_the_same_dataset():
    ds = get_dataset("embedded", pad_to=[32, 32], channels=3)
    again = get_dataset(ds.name, **ds.get_config())
    assert again.image_shape == ds.image_shape == (32, 32, 3)
