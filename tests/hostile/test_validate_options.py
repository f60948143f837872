"""Hostile *options* that ``linksim validate`` checks without running (and without TensorFlow):
schemes, codecs, channel codes, modulations, channels, relays, data sets, the classifier, the
rate against the scheme's code.  Each: exit 2 and a message naming the field and the allowed values."""

import pytest

from validate_helpers import BASE, GOOD
from validate_helpers import validate_text as validate

SEP = GOOD


def scheme(body: str) -> str:
    return BASE + f"schemes:\n  - {body}\n"


CASES = [
    # (scenario text, field named, words the message must hold)
    (scheme("{type: deepjscc, bogus: 1}"), "schemes[0].bogus", ["no option(s) bogus", "allowed:", "filters"]),
    (scheme("{type: deepjscc, quantizer: ternary}"), "schemes[0].quantizer", ["binary", "onoff", "ternary"]),
    (scheme("{type: deepjscc, filters: [16, 32]}"), "schemes[0].filters", ["four positive integers"]),
    (scheme("{type: deepjscc, val_fraction: 0.9}"), "schemes[0].val_fraction", ["(0, 0.5)"]),
    (scheme("{type: deepjscc, train_channel: rayleigh}"), "schemes[0].train_channel", ["awgn, scenario"]),
    (scheme("{type: deepjscc, batch_size: 0}"), "schemes[0].batch_size", ["positive integer"]),
    (scheme("{type: deepjscc, spread: true, train_channel: scenario}"), "schemes[0].spread", ["one or the other"]),
    (scheme("{type: sdjscc, quantizer: null}"), "schemes[0].quantizer", ["binary, onoff"]),
    (scheme("{type: sdjscc, feature_layer: conv9}"), "schemes[0].feature_layer", ["conv1, conv2, conv3, conv4"]),
    (scheme("{type: sdjscc_nogsw, tau: 10}"), "schemes[0].tau", ["do not apply"]),
    (scheme("{type: linear, gain: magic}"), "schemes[0].gain", ["header, genie, unknown"]),
    (scheme("{type: uncoded, design_snr_db: 3}"), "schemes[0].design_snr_db", ["allowed: gain, label"]),
    (scheme("{type: jscc, architecture: {type: deepjscc}, stages: [{losses: [{type: mse}], bogus: 1}]}"),
     "schemes[0].stages[0].bogus", ["stage 1 has no option(s) bogus", "losses"]),
    (scheme("{type: jscc, architecture: {type: deepjscc}, stages: [{losses: [{type: mse, weight: -1}]}]}"),
     "schemes[0].stages[0].losses[0].weight", [">= 0"]),
    (scheme("{type: jscc, architecture: {type: deepjscc}, stages: [{losses: [{type: msee}]}]}"),
     "schemes[0].stages[0].losses[0].type", ["unknown loss 'msee'", "Did you mean 'mse'"]),
    (scheme("{type: jscc, architecture: {type: deepjscc, kernel_size: 0}, stages: [{losses: [{type: mse}]}]}"),
     "schemes[0].architecture.kernel_size", ["positive integer"]),
    (scheme("{type: jscc, architecture: {type: resnet}, stages: [{losses: [{type: mse}]}]}"),
     "schemes[0].architecture.type", ["unknown architecture 'resnet'", "deepjscc"]),
    (scheme("{type: separation, codec: {type: webp, method: 9}}"), "schemes[0].codec.method", ["0, 1, 2, 3, 4, 5, 6"]),
    (scheme("{type: separation, codec: {type: jpeg, headers: none}}"), "schemes[0].codec.headers",
     ["full, abbreviated"]),
    (scheme("{type: separation, codec: {type: jpeg, headers: abbreviated, optimize: true}}"),
     "schemes[0].codec.optimize", ["optimize must be False with headers: abbreviated"]),
    (scheme("{type: separation, codec: {type: png}}"), "schemes[0].codec.type", ["unknown codec 'png'", "webp"]),
    (scheme("{type: separation, codec: {type: webp}, channel_code: {type: ldpc_80211n, rate: 7/8}}"),
     "schemes[0].channel_code.rate", ["1/2, 2/3, 3/4, 5/6"]),
    (scheme("{type: separation, codec: {type: webp}, channel_code: {type: ldpc5g, k: 3000, n: 1944}}"),
     "schemes[0].channel_code.k", ["unsupported (k, n)"]),
    (scheme("{type: separation, codec: {type: webp}, channel_code: {type: ldpc5g, num_iter: 0}}"),
     "schemes[0].channel_code.num_iter", ["positive integer"]),
    (scheme("{type: separation, codec: {type: webp}, modulation: {type: qam, num_bits_per_symbol: 5}}"),
     "schemes[0].modulation.num_bits_per_symbol", ["2, 4, 6, 8"]),
    (scheme("{type: separation, codec: {type: webp}, fallback: white}"), "schemes[0].fallback", ["mean, gray, black"]),
    (SEP.replace("channel_uses: 486", "channel_uses: 100"), "schemes[0]",
     ["cannot carry one codeword of 1944 bits", "needs at least 486 channel uses"]),
    (SEP.replace("channel_uses: 486", "bandwidth_ratio: 0.1"), "schemes[0]",
     ["78 channel uses per image cannot carry one codeword"]),
    (SEP + "channel: {type: multihop, relay: qf, relay_params: {bits: 0}}\n", "channel.relay_params.bits",
     ["integer in 1..16"]),
    (SEP + "channel: {type: multihop, relay: qf, relay_params: {qf: {bits: 99}}}\n",
     "channel.relay_params.qf.bits", ["integer in 1..16"]),
    (SEP + "channel: {type: multihop, relay: qf}\n", "channel.relay_params", ["needs the option bits"]),
    (SEP + "channel: {type: multihop, relay: af, relay_params: {gain: huge}}\n", "channel.relay_params.gain",
     ["fixed, measured"]),
    (SEP + "channel: {type: multihop, relay: af, relay_params: {af: {gain: fixed}, bits: 3}}\n",
     "channel.relay_params", ["mixes relay names and options"]),
    (SEP + "channel: {type: multihop, hops: 3, relay: [af]}\n", "channel.relay", ["hops - 1 = 2"]),
    (SEP + "channel: {type: multihop, compensate_gain: maybe}\n", "channel.compensate_gain", ["true or false"]),
    (SEP + "channel: {type: multihop, hop: {type: multihop}}\n", "channel.hop.type", ["one-hop channel"]),
    (SEP + "channel: {type: awgn, snr: 3}\n", "channel.snr", ["takes no options"]),
    (SEP.replace("test_size: 8}", "test_size: 8, params: {size: 3}}"), "dataset.params.size",
     ["no option(s) size", "image_size, pad_to, channels"]),
    (SEP.replace("test_size: 8}", "test_size: 8, params: {pad_to: [16, 16]}}"), "dataset.params.pad_to",
     ["smaller than the images (28x28)"]),
    (SEP.replace("test_size: 8}", "test_size: 8, params: {channels: 2}}"), "dataset.params.channels",
     ["null, 1, 3"]),
    (SEP.replace("test_size: 8}", "test_size: 8, params: {image_size: [0, 8]}}"), "dataset.params.image_size",
     ["two positive integers"]),
    (SEP + "task: {classifier: {widht: 3}}\n", "task.classifier.widht", ["unknown classifier option(s) widht", "width"]),
    (SEP + "task: {classifier: {dropout: 1.5}}\n", "task.classifier.dropout", ["[0, 1)"]),
    (SEP + "task: {classifer: {}}\n", "task.classifer", ["no registered task takes the option 'classifer'"]),
    (SEP + "metrics: [psnr, acuracy]\n", "metrics[1]", ["unknown metric 'acuracy'", "Did you mean 'accuracy'"]),
    (SEP + "plots: [psnr_vs_snrr]\n", "plots[0]", ["unknown plot 'psnr_vs_snrr'"]),    (SEP.replace("name: hostile", "name: ../escape"), "name", ["would write outside runs/", "without '/'"]),
    (SEP.replace("name: hostile", "name: /tmp/abs"), "name", ["would write outside runs/"]),
    (SEP.replace("name: hostile", "name: ~root"), "name", ["starting with '~'"]),
    (SEP.replace("name: hostile", "name: " + "n" * 201), "name", ["at most 200 bytes"]),
    (SEP.replace("name: hostile", 'name: "a\\nb"'), "name", ["control characters"]),
    (SEP.replace("test_size: 8", "test_size: 20000"), "dataset.test_size", ["has only 1,000", "at most 1,000"]),
    (SEP.replace("test_size: 8", "test_size: 8, train_size: 9001"), "dataset.train_size", ["has only 9,000"]),
    (SEP.replace("test_size: 8}", "test_size: 1000, params: {image_size: [8192, 8192]}}"), "dataset",
     ["GiB available", "image_size"]),
    (SEP.replace("channel_uses: 486", "bandwidth_ratio: 1.0e-9"), "rate.bandwidth_ratio",
     ["less than one", "(28x28x1)"]),
    (SEP + "metrics: []\n", "metrics", ["lists no metric", "psnr"]),
    (SEP + "metrics: [psnr, ssim, psnr]\n", "metrics[2]", ["listed twice"]),
    (SEP + "channel: {type: multihop, hops: 1, relay: df}\n", "channel.relay", ["one-hop chain has no relay"]),
    (SEP + "evaluation: {bogus: 1}\n", "evaluation.bogus", ["unknown field(s) bogus", "batch_size"]),
    (scheme("{type: deepjscc, epochs: 1000000000}"), "schemes[0].epochs", ["1..100000"]),
    (SEP + "metrics: [ssim]\nplots: [psnr_vs_snr]\n", "plots[0]", ["draws the metric 'psnr'", "add it to metrics"]),
]


@pytest.mark.parametrize("text, field, words", CASES, ids=[c[1] + "-" + str(i) for i, c in enumerate(CASES)])
def test_an_invalid_option_is_refused_naming_its_field_and_the_allowed_values(tmp_path, capsys, text, field, words):
    rc, err = validate(capsys, tmp_path, text)
    assert rc == 2, err
    assert f"field '{field}'" in err and "s.yaml:" in err, err
    for w in words:
        assert w in err, err


def _folder_dataset(path) -> str:
    return SEP.replace("{name: embedded, test_size: 8}", f"{{name: image_folder, test_size: 8, params: {{path: {path}}}}}")


@pytest.mark.parametrize("content, field, words", [
    ("file", "dataset.params.path", "not a folder"),
    ("empty", "dataset.params.path", "is empty"),
    ("no images", "dataset.params", "images"),  # refused by the data set itself, naming the folder
])
def test_an_image_folder_that_is_a_file_empty_or_without_images_is_refused(tmp_path, capsys, content, field, words):
    path = tmp_path / "images"
    if content == "file":
        path.write_bytes(b"x")
    else:
        path.mkdir()
        if content == "no images":
            (path / "notes.txt").write_text("no images here")
    rc, err = validate(capsys, tmp_path, _folder_dataset(path))
    assert rc == 2 and f"field '{field}'" in err and words in err and str(path) in err, err


def test_a_published_data_set_path_without_its_files_is_refused(tmp_path, capsys):
    rc, err = validate(capsys, tmp_path, SEP.replace("{name: embedded, test_size: 8}",
                                                     f"{{name: mnist, test_size: 8, params: {{path: {tmp_path}}}}}"))
    assert rc == 2 and "field 'dataset.params'" in err and "no MNIST files" in err


def test_a_missing_data_set_path_is_refused(tmp_path, capsys):
    rc, err = validate(capsys, tmp_path, SEP.replace("{name: embedded, test_size: 8}",
                                                     "{name: image_folder, test_size: 8, params: {path: /no/such}}"))
    assert rc == 2 and "field 'dataset.params.path'" in err and "does not exist" in err


def test_an_image_folder_without_a_path_is_refused(tmp_path, capsys):
    rc, err = validate(capsys, tmp_path, SEP.replace("{name: embedded, test_size: 8}", "{name: image_folder}"))
    assert rc == 2 and "field 'dataset.params'" in err and "needs the option path" in err
