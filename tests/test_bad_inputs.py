"""Bad input through the real command lines (`flows.build.main`, `flows.report.main`), issue 12.

Every case runs a CLI as a user would and checks what the user sees: the documented exit code (2 bad
input, 3 data missing/corrupt, 4 tool, 5 verification, 6 does not fit), exactly one line on stderr
starting with `error:` that names the problem, no traceback anywhere (stdout, stderr, log), and no
`report.json` left in the build folder. A case that must *work* (a config without a "model" key, a
damaged artifact in a finished build) checks the result instead. Most cases call `main(argv)` in this
process; the last ones start the scripts themselves.

The data is tiny and generated here: torchvision's MNIST layout (`MNIST/raw/*.gz` with real IDX
headers), CIFAR-10's python layout (pickled batches), scikit-learn digits for training runs; `--until`
stops a build as early as the case allows. Downloads are always off: nothing here uses the network.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import pickle
import re
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from flows.build import main as build_main
from flows.report import main as report_main

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = "--set data.download=false".split()
TINY = "--set data.max_train=256 --set data.max_test=64 --epochs 1 --qat-epochs 1".split()
DIGITS = ["--dataset", "digits", *OFFLINE, *TINY]
# the lenet5_fire recipe (train, structure, prune, share, encode, ...) at the smallest size that runs every stage
SHORT_RECIPE = "--set structure.epochs=1 --set compress.iterations=1 --set compress.retrain_epochs=1".split()
SHORT_RECIPE += "--set compress.share_epochs=1".split()

# ---------------------------------------------------------------------------------------------
# Running a CLI and checking what the user sees
# ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one CLI call left behind: its exit code, stdout, stderr and the log records' text."""

    code: int
    out: str
    err: str
    log: str

    def describe(self) -> str:
        return f"exit {self.code}\n--- stderr ---\n{self.err}\n--- stdout ---\n{self.out[-2000:]}"


@pytest.fixture
def cli(capsys, caplog, monkeypatch, tmp_path):
    """`cli(*argv)` runs flows/build.py's main in a scratch working folder (`main=report_main` for the
    report CLI). An exception out of main fails the test with its traceback: users must never see one."""
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)

    def run(*argv, main: Callable[[list[str]], int] = build_main) -> Outcome:
        caplog.clear()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            err = capsys.readouterr().err
            pytest.fail(f"the CLI raised instead of printing one line:\n{traceback.format_exc()}\n{err}", False)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err, caplog.text)

    return run


def assert_one_line_error(res: Outcome, code: int, *words: str, out: Path | None = None) -> str:
    """The exit code, one `error:` line naming the problem (each of `words`, case-insensitive), no
    traceback anywhere, and (for a build) no report in the build folder `out`. Returns the line."""
    for where, text in (("stderr", res.err), ("stdout", res.out), ("log", res.log)):
        assert "Traceback" not in text, f"traceback in {where}:\n{res.describe()}"
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr:\n{res.describe()}"
    assert lines[0].startswith("error: "), res.describe()
    missing = [w for w in words if w.lower() not in lines[0].lower()]
    assert not missing, f"the message does not name {missing}:\n{res.describe()}"
    assert res.code == code, f"expected exit {code}:\n{res.describe()}"
    if out is not None:
        assert not (out / "report.json").exists(), "a report.json was left by a failed build"
        assert not (out / "report.md").exists(), "a report.md was left by a failed build"
    return lines[0]


def assert_usage_error(res: Outcome, *words: str) -> None:
    """argparse's own refusal (its convention, kept): exit 2, the usage text, then one `error:` line
    naming the option."""
    assert res.code == 2 and "Traceback" not in res.err + res.out + res.log, res.describe()
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert lines[0].startswith("usage:") and sum("error:" in line for line in lines) == 1, res.describe()
    assert "error:" in lines[-1] and all(w.lower() in lines[-1].lower() for w in words), res.describe()


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ---------------------------------------------------------------------------------------------
# Config values on the command line (all refused before the build starts)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ("--set train.lr=NaN", ["train.lr"]),
        ("--set train.lr=nan", ["train.lr"]),
        ("--set train.lr=inf", ["train.lr"]),
        ("--set train.lr=-Infinity", ["train.lr"]),
        ("--set train.lr=1e999", ["train.lr", "finite"]),  # JSON reads 1e999 as inf
        ("--set train.qat_lr=Infinity", ["train.qat_lr"]),
        ("--set hls.clock_period_ns=NaN", ["hls.clock_period_ns"]),
        ("--set hls.target_images_per_second=NaN", ["hls.target_images_per_second"]),
        ("--set structure.ratio=NaN", ["structure.ratio"]),
        ("--set train.lr=-0.001", ["train.lr", "> 0"]),
        ("--set train.lr=0", ["train.lr"]),
        ("--set train.epochs=-1", ["train.epochs", ">= 0"]),
        ("--epochs -3", ["train.epochs"]),
        ("--qat-epochs -1", ["train.qat_epochs"]),
        ("--csim-samples -5", ["csim.samples"]),
        ("--set train.batch_size=0", ["train.batch_size"]),
        ("--set data.max_train=0", ["data.max_train"]),
        ("--set train.nope=1", ["train.nope", "does not exist"]),
        ("--set nosection.key=1", ["nosection"]),
        ("--set train=3", ["train", "object"]),
        ("--set train.epochs=abc", ["train.epochs", "integer"]),
        ("--set train.epochs=1.5", ["train.epochs", "integer"]),
        ("--set train.epochs=true", ["train.epochs", "integer"]),
        ("--set train.lr=fast", ["train.lr", "number"]),
        ("--set data.download=maybe", ["data.download", "true/false"]),
        ("--set hls.layer_reuse=5", ["hls.layer_reuse", "object"]),
        ("--set hls.layer_reuse.Conv_0=0", ["hls.layer_reuse.Conv_0"]),
        ("--set hls.layer_precision.x=float", ["hls.layer_precision.x"]),
        ("--set compress.density.ip1=1.5", ["compress.density.ip1"]),
        ("--set hls.project_name=1abc", ["hls.project_name"]),
        ("--set hls.io_type=io_magic", ["hls.io_type", "io_stream"]),
        ("--set quant.weight_bits=1", ["quant.weight_bits", "2..16"]),
        ("--dataset imagenet", ["data.dataset", "mnist"]),
        ("--set epochs", ["KEY=VALUE"]),
        ("--set =3", ["does not exist"]),
    ],
)
def test_bad_config_value(cli, tmp_path, args, words):
    out = tmp_path / "b"
    res = cli("lenet5_fire", "--out", out, "--dataset", "digits", *OFFLINE, *args.split())
    assert_one_line_error(res, 2, *words, out=out)
    assert not (out / "model").exists(), "the build started although its config is invalid"


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_seed_out_of_range(cli, tmp_path, seed):
    """Seeds feed torch (int64), numpy and scikit-learn's KMeans (0..2**32-1): a seed one of them refuses
    is bad input before the build starts, not a traceback in the share step."""
    out = tmp_path / "b"
    res = cli("lenet5_fire", "--out", out, *DIGITS, *SHORT_RECIPE, f"--seed={seed}", "--until", "share")
    assert_one_line_error(res, 2, "seed", out=out)
    assert not (out / "model").exists(), "the build started with a seed it cannot use"


@pytest.mark.parametrize(
    ("knob", "value"), [("nope", "3"), ("stem_channels", "-4"), ("stem_channels", "0"), ("expand", "[1]")]
)
def test_bad_architecture_knob(cli, tmp_path, knob, value):
    """arch.* is free-form (the model checks it when it is built): a value the network cannot take is
    bad input naming the knob, not a tensor error from deep inside torch."""
    out = tmp_path / "b"
    res = cli("lenet5_fire", "--out", out, *DIGITS, "--set", f"arch.{knob}={value}", "--until", "train")
    assert_one_line_error(res, 2, knob, out=out)
    assert not (out / "model" / "float.pt").exists()


@pytest.mark.parametrize(
    ("setting", "group"),
    [
        ("structure.ratios.features.fire1.squeeze=0.25", "features.fire1.squeeze"),
        ("compress.density.features.stem=0.5", "features.stem"),
        ("hls.layer_reuse.Conv2D_Conv_0=4", "Conv2D_Conv_0"),
    ],
)
def test_per_layer_keys_with_dots_can_be_set(cli, tmp_path, setting, group):
    """Per-layer tables are keyed by PyTorch module names, which hold dots (the lenet5_fire recipe's own
    keys): `--set structure.ratios.features.fire1.squeeze=0.25` sets that group, it is not refused."""
    out = tmp_path / "b"
    res = cli("lenet5_fire", "--out", out, *DIGITS, "--set", setting, "--until", "train")
    assert res.code == 0, res.describe()
    section, table, _ = setting.split(".", 2)
    saved = json.loads((out / "config.json").read_text())[section][table]
    assert saved[group] == json.loads(setting.split("=", 1)[1]), saved


@pytest.mark.parametrize(
    ("args", "option"), [("--epochs abc", "--epochs"), ("--io-type x", "--io-type"), ("--seed 1.5", "--seed")]
)
def test_argparse_refusals_name_the_option(cli, tmp_path, args, option):
    assert_usage_error(cli("lenet5_fire", "--out", tmp_path / "b", *args.split()), option)
    assert not (tmp_path / "b").exists()


def test_no_model_given(cli):
    assert_one_line_error(cli("--board", "pynq-z2"), 2, "no model given", "--list")


# ---------------------------------------------------------------------------------------------
# --config files
# ---------------------------------------------------------------------------------------------

# kind -> (file name, content, words of the error, whether the error is about the whole file: then it
# names the file; an error about one value names the key instead)
CONFIG_FILES = {
    "non-utf8": ("config.json", b'{"train": {"epochs": 1}, "seed": "\xff\xfe\xfa"}', ["UTF-8"], True),
    "binary": ("config.yaml", bytes(range(256)) * 4, ["UTF-8"], True),
    "invalid-json": ("config.json", b'{"train": {"epochs": 1,}', ["not valid JSON"], True),
    "json-nan": ("config.json", b'{"train": {"lr": NaN}}', ["not valid JSON"], True),
    "empty-json": ("config.json", b"", ["not valid JSON"], True),
    "invalid-yaml": ("config.yaml", b"train:\n  epochs: [1, 2\n  lr: 0.1\n", ["not valid YAML"], True),
    "yaml-python-tag": ("config.yaml", b"seed: !!python/object/apply:os.system ['touch MARKER']\n", ["YAML"], True),
    "empty-yaml": ("config.yaml", b"", ["expected an object"], True),
    "list": ("config.json", b'[{"model": "lenet5_fire"}]', ["expected an object", "list"], True),
    "yaml-scalar": ("config.yml", b"just a string\n", ["expected an object"], True),
    "unknown-key": ("config.json", b'{"trian": {"epochs": 1}}', ["unknown keys", "trian"], False),
    "section-not-object": ("config.json", b'{"data": "digits"}', ["data", "object"], False),
    "yaml-nan": ("config.yaml", b"train:\n  lr: .nan\n", ["train.lr"], False),
    "negative-epochs": ("config.json", b'{"train": {"epochs": -2}}', ["train.epochs"], False),
}


@pytest.mark.parametrize("kind", ["folder", "missing", *CONFIG_FILES])
def test_bad_config_file(cli, tmp_path, kind):
    marker = tmp_path / "yaml-ran-code"
    if kind == "folder":
        path, words, whole = tmp_path / "configs", ["folder"], True
        path.mkdir()
    elif kind == "missing":
        path, words, whole = tmp_path / "nope.json", ["does not exist"], True
    else:
        name, content, words, whole = CONFIG_FILES[kind]
        path = tmp_path / name
        path.write_bytes(content.replace(b"MARKER", str(marker).encode()))
    out = tmp_path / "b"
    line = assert_one_line_error(cli("lenet5_fire", "--out", out, "--config", path, *OFFLINE), 2, *words, out=out)
    assert not whole or path.name in line, "the message does not name the config file"
    assert not marker.exists(), "a YAML tag ran code"


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_without_model_key_uses_the_command_line_model(cli, tmp_path, suffix):
    """The model is named on the command line; a config file need not repeat it."""
    path = tmp_path / f"partial{suffix}"
    data = {"dataset": "digits", "max_train": 256, "max_test": 64, "download": False}
    path.write_text(json.dumps({"data": data, "train": {"epochs": 1}}))  # JSON is valid YAML too
    out = tmp_path / "b"
    res = cli("lenet5_fire", "--out", out, "--config", path, "--until", "train")
    assert res.code == 0, res.describe()
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"] == "lenet5_fire" and saved["train"]["epochs"] == 1 and saved["data"]["max_train"] == 256
    assert (out / "model" / "float.pt").is_file() and not (out / "report.json").exists()


# ---------------------------------------------------------------------------------------------
# Models, boards, entry points, steps, the build folder
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "board", "words"),
    [
        ("resnet50", "pynq-z2", ["unknown model 'resnet50'", "lenet5_fire"]),
        ("lenet5_fire", "pynq-z9", ["unknown board 'pynq-z9'", "pynq-z2"]),
        ("lenet5_fire", "../constraints/pynq-z2", ["unknown board"]),
        ("lenet5_fire", "", ["unknown board"]),
        (".relative_mod:build", "pynq-z2", ["absolute"]),
        (":build", "pynq-z2", ["absolute"]),
        ("fireflow_no_such_module_x:build", "pynq-z2", ["cannot import", "fireflow_no_such_module_x"]),
    ],
)
def test_unknown_model_or_board(cli, tmp_path, model, board, words):
    out = tmp_path / "b"
    assert_one_line_error(cli(model, "--board", board, "--out", out, *OFFLINE), 2, *words, out=out)


BUILD_SIGNATURE = "def build(quant, in_shape, num_classes, arch):\n"
ENTRY_MODULES = {  # kind -> (source of the user's module, words of the error); the entry point is <module>:build
    "returns_none": (BUILD_SIGNATURE + "    return None\n", ["NoneType"]),
    "returns_int": (BUILD_SIGNATURE + "    return 42\n", ["int"]),
    "import_raises": ("raise RuntimeError('boom at import')\n", ["boom at import"]),
    "syntax_error": ("def build(:\n", ["SyntaxError"]),
    "missing_function": ("def other():\n    pass\n", ["has no function 'build'"]),
    "not_callable": ("build = 3\n", ["build"]),
    "wrong_signature": ("def build():\n    return None\n", ["build"]),
    "raises_value_error": (BUILD_SIGNATURE + "    raise ValueError('needs 3 channels')\n", ["needs 3 channels"]),
    # a network that does not take the data set's input shape: the model's problem, in one line
    "wrong_input_shape": (
        "from torch import nn\n\n" + BUILD_SIGNATURE + "    return nn.Sequential(nn.Flatten(), nn.Linear(10, 10))\n",
        ["model"],
    ),
}


@pytest.mark.parametrize("kind", sorted(ENTRY_MODULES))
def test_bad_entry_point(cli, tmp_path, monkeypatch, kind):
    name = f"fireflow_user_{kind}"
    (tmp_path / "usercode").mkdir()
    (tmp_path / "usercode" / f"{name}.py").write_text(ENTRY_MODULES[kind][0])
    monkeypatch.syspath_prepend(str(tmp_path / "usercode"))
    monkeypatch.delitem(sys.modules, name, raising=False)
    out = tmp_path / "b"
    try:
        res = cli(f"{name}:build", "--out", out, *DIGITS, "--until", "train")
    finally:
        sys.modules.pop(name, None)
    assert_one_line_error(res, 2, *ENTRY_MODULES[kind][1], out=out)
    assert not (out / "model" / "float.pt").exists()


@pytest.mark.parametrize(("option", "value"), [("--force", "nope"), ("--until", "nope"), ("--until", "synth")])
def test_unknown_step(cli, tmp_path, option, value):
    out = tmp_path / "b"
    res = cli("lenet5_fire", "--out", out, "--dataset", "digits", *OFFLINE, option, value)
    assert_one_line_error(res, 2, option, repr(value), "train", out=out)
    assert not (out / "model").exists()


@pytest.mark.parametrize("where", ["below-a-file", "is-a-file", "read-only"])
def test_unwritable_out(cli, tmp_path, where):
    if where == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = {"below-a-file": blocker / "sub", "is-a-file": blocker, "read-only": tmp_path / "ro"}[where]
    if where == "read-only":
        out.mkdir(mode=stat.S_IRUSR | stat.S_IXUSR)
    res = cli("lenet5_fire", "--out", out, "--dataset", "digits", *OFFLINE)
    assert_one_line_error(res, 2, "cannot write", str(out), "--out")
    assert blocker.read_text() == "not a folder"


# ---------------------------------------------------------------------------------------------
# MNIST: torchvision's raw layout, generated here, then damaged
# ---------------------------------------------------------------------------------------------

IMAGES_MAGIC, LABELS_MAGIC = 0x0803, 0x0801


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_mnist(root: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """root/MNIST/raw/*.gz with valid IDX headers; returns the raw folder."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, (n,))
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images, IMAGES_MAGIC), mtime=0))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels, LABELS_MAGIC), mtime=0))
    return raw


IMAGES_GZ, LABELS_GZ = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
MNIST_DAMAGE = {  # kind -> words of the error
    "truncated-gz": [IMAGES_GZ, "gzip"],
    "truncated-labels-gz": [LABELS_GZ, "gzip"],
    "garbage-gz": [IMAGES_GZ, "gzip"],
    "empty-file": [IMAGES_GZ],
    "gzip-of-nothing": [IMAGES_GZ, "too short"],
    "wrong-magic": [IMAGES_GZ, "magic"],
    "labels-as-images": [IMAGES_GZ, "magic"],
    "header-says-more": [IMAGES_GZ, "holds"],
    "labels-out-of-range": [LABELS_GZ, "0..9"],
    "labels-255": [LABELS_GZ, "0..9"],
    "label-count-differs": ["63 labels"],
    "file-missing": ["train-labels-idx1-ubyte"],
    "gz-is-a-folder": ["train-images-idx3-ubyte"],
}


def damage_mnist(raw: Path, kind: str) -> list[str]:
    """Damage the generated files as `kind` says; returns the words the error must contain."""
    images, labels = raw / IMAGES_GZ, raw / LABELS_GZ
    zeros = idx_bytes(np.zeros((64, 28, 28)), IMAGES_MAGIC)
    write = {
        "garbage-gz": (images, np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()),
        "empty-file": (images, b""),
        "gzip-of-nothing": (images, gzip.compress(b"")),
        "wrong-magic": (images, gzip.compress(idx_bytes(np.zeros((64, 28, 28)), 0x0C01))),
        "labels-as-images": (images, labels.read_bytes()),
        "header-says-more": (images, gzip.compress(zeros[:-100])),  # a valid gzip, the IDX payload cut short
        "labels-out-of-range": (labels, gzip.compress(idx_bytes(np.full(64, 10), LABELS_MAGIC))),
        "labels-255": (labels, gzip.compress(idx_bytes(np.full(64, 255), LABELS_MAGIC))),
        "label-count-differs": (labels, gzip.compress(idx_bytes(np.zeros(63), LABELS_MAGIC))),
    }
    if kind in write:
        write[kind][0].write_bytes(write[kind][1])
    elif kind in ("truncated-gz", "truncated-labels-gz"):
        _truncate(images if kind == "truncated-gz" else labels, 0.5 if kind == "truncated-gz" else 0.7)
    elif kind == "file-missing":
        labels.unlink()
    elif kind == "gz-is-a-folder":
        images.unlink()
        images.mkdir()
    else:
        raise AssertionError(kind)
    return MNIST_DAMAGE[kind]


def mnist_argv(out: Path, data_dir: Path | None, cache: Path) -> list:
    data = ["--data-dir", data_dir] if data_dir is not None else []
    return ["lenet5_fire", "--out", out, *data, "--cache-dir", cache, *OFFLINE, *TINY, "--until", "train"]


def _train_samples(out: Path) -> int:
    """The training images the build read: those it trained on plus those it held out for validation."""
    metrics = json.loads((out / "steps.json").read_text())["steps"]["train"]["metrics"]
    return metrics["train_samples"] + metrics["val_samples"]


def test_generated_mnist_builds(cli, tmp_path):
    """The control: the generated files are good, so every failure below is the damage's."""
    write_mnist(tmp_path / "data")
    out = tmp_path / "b"
    res = cli(*mnist_argv(out, tmp_path / "data", tmp_path / "cache"))
    assert res.code == 0 and _train_samples(out) == 64, res.describe()


@pytest.mark.parametrize("kind", MNIST_DAMAGE)
def test_damaged_mnist(cli, tmp_path, kind):
    words = damage_mnist(write_mnist(tmp_path / "data"), kind)
    out = tmp_path / "b"
    assert_one_line_error(cli(*mnist_argv(out, tmp_path / "data", tmp_path / "cache")), 3, *words, out=out)
    assert not (out / "model" / "float.pt").exists()


@pytest.mark.parametrize("kind", ["truncated-gz", "garbage-gz", "wrong-magic", "labels-out-of-range"])
def test_damaged_mnist_with_a_warm_cache(cli, tmp_path, kind):
    """The cache holds files extracted from good archives; the source is then damaged. A new build
    with the same cache must read the damaged source, not the old extracted files."""
    raw = write_mnist(tmp_path / "data")
    assert cli(*mnist_argv(tmp_path / "first", tmp_path / "data", tmp_path / "cache")).code == 0
    words = damage_mnist(raw, kind)
    out = tmp_path / "second"
    assert_one_line_error(cli(*mnist_argv(out, tmp_path / "data", tmp_path / "cache")), 3, *words, out=out)


def test_damaged_mnist_with_a_warm_cache_and_the_same_build_folder(cli, tmp_path):
    """The same command twice, the data damaged in between: the finished train step must not be reused
    as if its data were unchanged (that kept the model of the old data, exit 0)."""
    raw = write_mnist(tmp_path / "data")
    argv = mnist_argv(tmp_path / "b", tmp_path / "data", tmp_path / "cache")
    assert cli(*argv).code == 0
    words = damage_mnist(raw, "truncated-gz")
    assert_one_line_error(cli(*argv), 3, *words, out=tmp_path / "b")


def test_replaced_mnist_is_used_not_the_old_extraction(cli, tmp_path):
    """A valid but different archive (fewer images) replaces the source: the build trains on it."""
    write_mnist(tmp_path / "data", n_train=64)
    assert cli(*mnist_argv(tmp_path / "first", tmp_path / "data", tmp_path / "cache")).code == 0
    write_mnist(tmp_path / "data", n_train=48, seed=3)
    out = tmp_path / "second"
    res = cli(*mnist_argv(out, tmp_path / "data", tmp_path / "cache"))
    assert res.code == 0 and _train_samples(out) == 48, res.describe()


def test_damaged_extracted_file_in_the_cache_is_extracted_again(cli, tmp_path):
    """The cache's extracted file is truncated (a full disk, an interrupted copy): extracted again."""
    write_mnist(tmp_path / "data")
    assert cli(*mnist_argv(tmp_path / "first", tmp_path / "data", tmp_path / "cache")).code == 0
    extracted = tmp_path / "cache" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    _truncate(extracted)
    res = cli(*mnist_argv(tmp_path / "second", tmp_path / "data", tmp_path / "cache"))
    assert res.code == 0 and extracted.stat().st_size == 16 + 64 * 28 * 28, res.describe()


def test_damaged_cache_without_data_dir(cli, tmp_path):
    """No --data-dir: the cache's own archive is truncated; a data error naming it, not a traceback."""
    _truncate(write_mnist(tmp_path / "cache") / "t10k-images-idx3-ubyte.gz")
    out = tmp_path / "b"
    assert_one_line_error(cli(*mnist_argv(out, None, tmp_path / "cache")), 3, "t10k-images-idx3-ubyte.gz", out=out)


@pytest.mark.parametrize(
    ("layout", "words"),
    [
        ("no-data-dir", ["--data-dir"]),  # nothing in the cache, downloads off
        ("data-dir-missing", ["is not a folder"]),
        ("data-dir-is-a-file", ["is not a folder"]),
        ("no-mnist-folder", ["MNIST/"]),
        ("no-raw-folder", ["raw/"]),
        ("empty-raw-folder", ["train-images-idx3-ubyte"]),
    ],
)
def test_missing_mnist(cli, tmp_path, layout, words):
    data = tmp_path / "data"
    folders = {"no-mnist-folder": data / "FashionMNIST", "no-raw-folder": data / "MNIST"}
    if layout == "data-dir-is-a-file":
        data.write_text("x")
    elif layout in ("no-mnist-folder", "no-raw-folder", "empty-raw-folder"):
        folders.get(layout, data / "MNIST" / "raw").mkdir(parents=True)
    out = tmp_path / "b"
    res = cli(*mnist_argv(out, None if layout == "no-data-dir" else data, tmp_path / "cache"))
    assert_one_line_error(res, 3, *words, out=out)


def test_cache_dir_is_a_file(cli, tmp_path):
    write_mnist(tmp_path / "data")
    (tmp_path / "cache").write_text("not a folder")
    out = tmp_path / "b"
    res = cli(*mnist_argv(out, tmp_path / "data", tmp_path / "cache"))
    assert_one_line_error(res, 3, "cache", "--cache-dir", out=out)


# ---------------------------------------------------------------------------------------------
# CIFAR-10: pickled batches must never run code, whatever the md5 setting
# ---------------------------------------------------------------------------------------------

CIFAR_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")


def cifar_batch(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    entry = {b"batch_label": b"generated", b"labels": labels, b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
    return pickle.dumps(entry, protocol=2)  # as torchvision's files were written


def write_cifar(root: Path, n: int = 8) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(CIFAR_BATCHES):
        (folder / name).write_bytes(cifar_batch(n, i))
    return folder


class Planted:
    """Unpickles into `function(*args)`: os.system, exec, or a function of a module the user has on sys.path."""

    def __init__(self, function: Callable, *args: str) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return (self.function, self.args)


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """(payload(kind) -> bytes, marker): a pickled batch whose b"data" writes `marker` if it is unpickled."""
    marker = tmp_path / "pwned"
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "fireflow_evil_plant.py").write_text("def plant(path):\n    open(path, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "evil"))
    import fireflow_evil_plant  # a naive unpickler would import it by name

    def payload(kind: str) -> bytes:
        evil = {
            "os.system": Planted(os.system, f"touch '{marker}'"),
            "exec": Planted(exec, f"open({str(marker)!r}, 'w').write('ran')"),
            "module-function": Planted(fireflow_evil_plant.plant, str(marker)),
        }[kind]
        return pickle.dumps({b"labels": [0] * 8, b"data": evil}, protocol=2)

    yield payload, marker
    sys.modules.pop("fireflow_evil_plant", None)


def cifar_argv(out: Path, data_dir: Path, cache: Path, *extra: str) -> list:
    data = ["--dataset", "cifar10", "--data-dir", data_dir, "--cache-dir", cache]
    return ["lenet5_fire", "--out", out, *data, *OFFLINE, *TINY, *extra, "--until", "train"]


NO_MD5 = ("--set", "data.verify_md5=false")


def test_generated_cifar_builds_without_md5(cli, tmp_path):
    """The control: the generated batches load when the md5 check is off."""
    write_cifar(tmp_path / "data")
    out = tmp_path / "b"
    res = cli(*cifar_argv(out, tmp_path / "data", tmp_path / "cache", *NO_MD5))
    assert res.code == 0 and (out / "model" / "float.pt").is_file(), res.describe()


@pytest.mark.parametrize("payload_kind", ["os.system", "exec", "module-function"])
@pytest.mark.parametrize("md5", ["verify_md5=false", "FIREFLOW_SKIP_MD5=1", "md5-on"])
def test_cifar_pickle_never_runs_code(cli, tmp_path, monkeypatch, planted, payload_kind, md5):
    payload, marker = planted
    (write_cifar(tmp_path / "data") / "data_batch_1").write_bytes(payload(payload_kind))
    monkeypatch.delenv("FIREFLOW_SKIP_MD5", raising=False)
    if md5 == "FIREFLOW_SKIP_MD5=1":
        monkeypatch.setenv("FIREFLOW_SKIP_MD5", "1")
    out = tmp_path / "b"
    res = cli(*cifar_argv(out, tmp_path / "data", tmp_path / "cache", *(NO_MD5 if md5 == "verify_md5=false" else ())))
    assert not marker.exists(), "unpickling a data file ran code"
    line = assert_one_line_error(res, 3, "data_batch_1", out=out)
    assert "verify_md5" not in line and "FIREFLOW_SKIP_MD5" not in line, "the message advises skipping checks"


def test_cifar_archive_with_a_planted_batch(cli, tmp_path, planted):
    """The same payload inside cifar-10-python.tar.gz: extracted, then refused."""
    payload, marker = planted
    (tmp_path / "data").mkdir()
    with tarfile.open(tmp_path / "data" / "cifar-10-python.tar.gz", "w:gz") as tar:
        for i, name in enumerate(CIFAR_BATCHES):
            blob = payload("os.system") if name == "data_batch_1" else cifar_batch(8, i)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    out = tmp_path / "b"
    res = cli(*cifar_argv(out, tmp_path / "data", tmp_path / "cache", *NO_MD5))
    assert not marker.exists(), "unpickling a data file ran code"
    assert_one_line_error(res, 3, "data_batch_1", out=out)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("labels-out-of-range", ["data_batch_2", "labels"]),
        ("truncated", ["data_batch_2"]),
        ("not-a-dict", ["data_batch_2"]),
        ("float-pixels", ["data_batch_2"]),
        ("missing", ["data_batch_2", "missing"]),
        ("truncated-archive", ["cifar-10-python.tar.gz"]),
    ],
)
def test_damaged_cifar(cli, tmp_path, damage, words):
    folder = write_cifar(tmp_path / "data")
    batch = folder / "data_batch_2"
    if damage == "labels-out-of-range":
        batch.write_bytes(pickle.dumps({b"labels": [12] * 8, b"data": np.zeros((8, 3072), np.uint8)}, protocol=2))
    elif damage == "truncated":
        _truncate(batch)
    elif damage == "not-a-dict":
        batch.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    elif damage == "float-pixels":
        batch.write_bytes(pickle.dumps({b"labels": [1] * 8, b"data": np.zeros((8, 3072), np.float32)}, protocol=2))
    elif damage == "missing":
        batch.unlink()
    else:
        with tarfile.open(tmp_path / "data" / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname="cifar-10-batches-py")
        shutil.rmtree(folder)
        _truncate(tmp_path / "data" / "cifar-10-python.tar.gz")
    out = tmp_path / "b"
    assert_one_line_error(cli(*cifar_argv(out, tmp_path / "data", tmp_path / "cache", *NO_MD5)), 3, *words, out=out)


# ---------------------------------------------------------------------------------------------
# Damaged artifacts in a build folder: a rerun notices and rebuilds
# ---------------------------------------------------------------------------------------------


def small_build_argv(out: Path) -> list:
    return ["lenet5_fire", "--out", out, *DIGITS, *SHORT_RECIPE, "--until", "encode"]


@pytest.fixture(scope="module")
def small_build(tmp_path_factory) -> Path:
    """lenet5_fire's recipe up to model.bundle (train, structure, prune, share, encode) at test size, once."""
    out = tmp_path_factory.mktemp("bad_inputs_build") / "b"
    assert build_main([str(a) for a in small_build_argv(out)]) == 0, "the shared small build failed"
    return out


@pytest.fixture
def build_copy(small_build, tmp_path) -> Path:
    return Path(shutil.copytree(small_build, tmp_path / "copy"))


def _step_runs(res: Outcome) -> dict[str, bool]:
    """step name -> True when this run ran it, False when it reused its artifacts (read from the log)."""
    return {m[1]: m[2] == "running" for m in re.finditer(r"step (\w+)\s+(running|skipped)", res.log)}


def test_rerun_of_an_intact_build_reuses_every_step(cli, build_copy):
    """The control for the cases below: nothing damaged, nothing rebuilt."""
    res = cli(*small_build_argv(build_copy))
    runs = _step_runs(res)
    assert res.code == 0 and list(runs) == ["train", "structure", "prune", "share", "encode"], res.describe()
    assert not any(runs.values()), runs


def damage_file(path: Path, kind: str) -> None:
    data = path.read_bytes()
    if kind == "deleted":
        path.unlink()
    elif kind == "one-byte-flipped":
        path.write_bytes(data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0x40]) + data[len(data) // 2 + 1 :])
    else:
        random = np.random.default_rng(7).integers(0, 256, len(data), dtype=np.uint8).tobytes()
        new = {"truncated": data[: len(data) // 2], "random": random, "empty": b"", "appended": data + b"\0junk"}
        path.write_bytes(new[kind])


@pytest.mark.parametrize(
    ("artifact", "step", "kind"),
    [
        ("model/float.pt", "train", "truncated"),
        ("model/float.pt", "train", "random"),
        ("model/float.pt", "train", "empty"),
        ("model/float.pt", "train", "deleted"),
        ("model/shared.pt", "share", "truncated"),
        ("model.bundle", "encode", "one-byte-flipped"),
        ("model.bundle", "encode", "truncated"),
        ("model.bundle", "encode", "appended"),
    ],
)
def test_damaged_artifact_is_rebuilt(cli, small_build, build_copy, artifact, step, kind):
    """Rerunning the same command rebuilds the damaged artifact (same seed: the same bytes) and says so."""
    damage_file(build_copy / artifact, kind)
    res = cli(*small_build_argv(build_copy))
    assert res.code == 0 and "Traceback" not in res.err + res.log, res.describe()
    assert (build_copy / artifact).read_bytes() == (small_build / artifact).read_bytes()
    assert _step_runs(res)[step], f"step {step} was reused over a damaged {artifact}"
    assert re.search(rf"step {step}\s+reruns", res.log), "the log does not say why the step reran"


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2, 3]", b'{"steps": [1]}', b"\xff\xfe"])
def test_damaged_steps_json_reruns_everything(cli, small_build, build_copy, content):
    (build_copy / "steps.json").write_bytes(content)
    res = cli(*small_build_argv(build_copy))
    assert res.code == 0 and "Traceback" not in res.err + res.log, res.describe()
    assert all(_step_runs(res).values()), _step_runs(res)
    assert (build_copy / "model.bundle").read_bytes() == (small_build / "model.bundle").read_bytes()


def test_failed_rerun_leaves_no_older_report(cli, tmp_path, build_copy):
    """A build folder with a report of an earlier run; a rerun on other (damaged) data fails: the old
    report goes, or it would look like the result of this run."""
    (build_copy / "report.json").write_text(json.dumps(GOOD_REPORT))
    (build_copy / "report.md").write_text("# an earlier build\n")
    damage_mnist(write_mnist(tmp_path / "data"), "truncated-gz")
    data = ["--dataset", "mnist", "--data-dir", tmp_path / "data", "--cache-dir", tmp_path / "cache"]
    assert_one_line_error(cli(*small_build_argv(build_copy), *data), 3, IMAGES_GZ, out=build_copy)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["truncated", "random"])
def test_damaged_checkpoint_in_a_finished_build(cli, tmp_path, kind):
    """The whole flow (through csim and the report), then a damaged float.pt: the rerun rebuilds it
    and every later step, and the report's figures are those of the first build."""
    out = tmp_path / "full"
    argv = ["lenet5_fire", "--out", out, *DIGITS, *SHORT_RECIPE, "--set", "csim.tb_samples=4"]
    first = cli(*argv)
    assert first.code == 0, first.describe()
    before = json.loads((out / "report.json").read_text())
    damage_file(out / "model" / "float.pt", kind)
    res = cli(*argv)
    assert res.code == 0 and "Traceback" not in res.err + res.log, res.describe()
    after = json.loads((out / "report.json").read_text())
    untimed = lambda csim: {k: v for k, v in csim.items() if not k.endswith("_seconds")}  # noqa: E731
    assert after["accuracy"] == before["accuracy"] and untimed(after["csim"]) == untimed(before["csim"])


# ---------------------------------------------------------------------------------------------
# flows/report.py on bad folders and report.json files
# ---------------------------------------------------------------------------------------------

GOOD_REPORT = {
    "model": "lenet5_fire",
    "board": "pynq-z2",
    "part": "xc7z020clg400-1",
    "resources": {
        "source": "estimate",
        **dict.fromkeys(("LUT", "FF", "DSP", "BRAM36", "URAM"), 1.0),
        "budget": {"LUT": 53200.0, "FF": 106400.0, "DSP": 220.0, "BRAM36": 140.0, "URAM": 0.0},
        "utilization": {"LUT": 0.1, "FF": 0.1, "DSP": 0.0, "BRAM36": 0.0, "URAM": 0.0},
        "fits": True,
    },
    "latency": {"source": "estimate", "cycles": 1283.0, "ii": 785.0, "latency_us": 12.83, "images_per_second": 1e5},
}


def test_report_cli_reads_a_build_report(cli, tmp_path):
    """The control: a well-formed report.json of a build that was not synthesized prints its estimate."""
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "report.json").write_text(json.dumps(GOOD_REPORT))
    res = cli(tmp_path / "b", main=report_main)
    assert res.code == 0 and "estimate" in res.out, res.describe()


def _report_without(section: str, key: str) -> bytes:
    report = json.loads(json.dumps(GOOD_REPORT))
    del report[section][key]
    return json.dumps(report).encode()


BAD_REPORTS = {
    "malformed": b'{"resources": {"LUT": 1',
    "empty": b"",
    "binary": b"\xff\xfe\x00garbage",
    "list": b"[1, 2, 3]",
    "string": b'"a string"',
    "no-sections": b"{}",
    "sections-not-objects": json.dumps({"resources": "lots", "latency": "fast"}).encode(),
    "no-resources-source": _report_without("resources", "source"),
    "no-budget": _report_without("resources", "budget"),
    "no-latency-ii": _report_without("latency", "ii"),
    "lut-not-a-number": json.dumps({**GOOD_REPORT, "resources": {**GOOD_REPORT["resources"], "LUT": "many"}}).encode(),
}


@pytest.mark.parametrize("kind", BAD_REPORTS)
def test_report_cli_on_a_bad_report_json(cli, tmp_path, kind):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "report.json").write_bytes(BAD_REPORTS[kind])
    assert_one_line_error(cli(tmp_path / "b", main=report_main), 2, "report.json")


@pytest.mark.parametrize("where", ["missing-folder", "empty-folder", "text-file", "binary-file", "report-json-folder"])
def test_report_cli_on_a_bad_path(cli, tmp_path, where):
    target = tmp_path / "x"
    if where == "empty-folder":
        target.mkdir()
    elif where == "text-file":
        target.write_text("hello, not a report\n")
    elif where == "binary-file":
        target.write_bytes(bytes(range(256)))
    elif where == "report-json-folder":  # report.json is itself a folder
        (target / "report.json").mkdir(parents=True)
    assert_one_line_error(cli(target, main=report_main), 2, str(target))


def test_report_cli_on_a_build_that_stopped_early(cli, build_copy):
    """A build run with --until has no report.json and no synthesis reports: one line, exit 2."""
    assert_one_line_error(cli(build_copy, main=report_main), 2, "no reports")


# ---------------------------------------------------------------------------------------------
# The same through the scripts, as a shell user runs them (a new interpreter each: ~8 s)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "case", "code", "words"),
    [
        ("flows/build.py", "nan-lr", 2, ["train.lr"]),
        ("flows/build.py", "truncated-mnist", 3, [IMAGES_GZ, "gzip"]),
        ("flows/report.py", "malformed-report", 2, ["report.json"]),
    ],
)
def test_scripts_print_one_line(tmp_path, script, case, code, words):
    if case == "nan-lr":
        args = ["lenet5_fire", "--out", tmp_path / "b", "--dataset", "digits", "--set", "train.lr=NaN"]
    elif case == "truncated-mnist":
        damage_mnist(write_mnist(tmp_path / "data"), "truncated-gz")
        args = ["-q", *mnist_argv(tmp_path / "b", tmp_path / "data", tmp_path / "cache")]
    else:
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "report.json").write_text('{"resources": {')
        args = [tmp_path / "b"]
    command = [sys.executable, str(ROOT / script), *map(str, args)]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    # exactly the one line: no library chatter either (e.g. torch's "No CUDA runtime is found" warning,
    # which torch.utils.cpp_extension logs at import on a CUDA build of torch without a GPU)
    build = tmp_path / "b" if script == "flows/build.py" else None  # the report CLI reads a report, never removes it
    assert_one_line_error(Outcome(proc.returncode, proc.stdout, proc.stderr, ""), code, *words, out=build)
