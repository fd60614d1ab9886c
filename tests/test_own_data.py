"""The user's own data (issue 13 item 4): `--dataset` as an .npz of arrays or an ImageFolder-style folder.

The shapes and class counts reach the model; bad data is a one-line DataError (exit 3); the data's
content is part of the train step's cache key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flows.api import run_build
from flows.data import load_data
from flows.errors import DataError

TINY = {"train.epochs": 1, "train.qat_epochs": 1, "data.download": False, "structure.enabled": False}


def write_npz(path: Path, n_train=40, n_test=12, shape=(16, 16, 3), classes=4, seed=0, **override) -> Path:
    """Learnable arrays: per-class prototypes + noise, float in [0, 1], channels-last (numpy/Keras order)."""
    rng = np.random.default_rng(seed)
    protos = rng.random((classes, *shape))
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % classes
        arrays[f"x_{split}"] = (0.7 * protos[y] + 0.3 * rng.random((n, *shape))).astype(np.float32)
        arrays[f"y_{split}"] = y.astype(np.int64)
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def write_folder(root: Path, layout="split", classes=("cat", "dog", "eel"), per_class=6, size=(10, 12), mode="L"):
    """PNG files in ImageFolder layout: root/train/<class>/ + root/test/<class>/ ("split") or root/<class>/."""
    rng = np.random.default_rng(0)
    splits = {"train": per_class, "test": 2} if layout == "split" else {"": per_class}
    for split, n in splits.items():
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = size if mode == "L" else (*size, 3)
                pixels = np.clip(rng.normal(40 + 80 * c, 20, shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, mode=mode).save(folder / f"{i}.png")
    return root


def test_npz_channels_last_floats_become_uint8_chw(tmp_path):
    path = write_npz(tmp_path / "d.npz")
    raw = np.load(path)
    bundle = load_data(str(path), val_fraction=0)
    assert bundle.in_shape == (3, 16, 16) and bundle.num_classes == 4
    assert bundle.train.images.dtype == torch.uint8
    expected = np.rint(np.moveaxis(raw["x_train"], -1, 1) * 255).astype(np.uint8)
    assert np.array_equal(bundle.train.images.numpy(), expected)
    assert bundle.train.labels.tolist() == raw["y_train"].tolist()


def test_npz_resize_and_grayscale(tmp_path):
    path = write_npz(tmp_path / "d.npz")
    bundle = load_data(str(path), image_size=[8, 6], channels=1, val_fraction=0.25)
    assert bundle.in_shape == (1, 8, 6) and len(bundle.val) == 10 and len(bundle.train) == 30


def test_image_folder_with_train_and_test(tmp_path):
    root = write_folder(tmp_path / "pets")
    bundle = load_data(str(root), val_fraction=0)
    assert bundle.in_shape == (1, 10, 12) and bundle.num_classes == 3
    assert bundle.class_names == ["cat", "dog", "eel"]  # ImageFolder's sorted order
    assert (len(bundle.train), len(bundle.test)) == (18, 6)
    # labels follow the folders: class c was drawn around 40 + 80c
    means = [float(bundle.train.images[bundle.train.labels == c].float().mean()) for c in range(3)]
    assert means == sorted(means)
    assert sorted(bundle.train.labels.tolist()) == sorted([0, 1, 2] * 6)
    assert bundle.train.labels[:6].tolist() != [0] * 6  # shuffled: max_train takes every class


def test_one_image_folder_is_split_stratified_and_resized_to_rgb(tmp_path):
    root = write_folder(tmp_path / "flat", layout="flat", per_class=10)
    bundle = load_data(str(root), image_size=16, channels=3, test_fraction=0.2, val_fraction=0)
    assert bundle.in_shape == (3, 16, 16)
    assert sorted(bundle.test.labels.tolist()) == [0, 0, 1, 1, 2, 2] and len(bundle.train) == 24


def _npz_case(tmp_path, **override):
    return write_npz(tmp_path / "bad.npz", **override)


def _garbage(path: Path) -> Path:
    path.write_bytes(b"garbage")
    return path


def _folder_case(tmp_path, kind):
    root = tmp_path / "imgs"
    if kind == "empty":
        root.mkdir()
    elif kind == "one-class":
        write_folder(root, classes=("only",))
    elif kind == "mixed-sizes":
        write_folder(root)
        Image.fromarray(np.zeros((9, 9), np.uint8), mode="L").save(root / "train" / "dog" / "odd.png")
    elif kind == "mixed-modes":
        write_folder(root)
        Image.fromarray(np.zeros((10, 12, 3), np.uint8), mode="RGB").save(root / "train" / "dog" / "rgb.png")
    elif kind == "class-without-images":
        write_folder(root)
        (root / "train" / "fox").mkdir()
    elif kind == "not-an-image":
        write_folder(root)
        (root / "train" / "dog" / "broken.png").write_bytes(b"not a png")
    elif kind == "unknown-test-class":
        write_folder(root)
        write_folder(tmp_path / "other", classes=("yak",))
        (tmp_path / "other" / "test" / "yak").rename(root / "test" / "yak")
    return root


BAD = {
    "missing-arrays": (lambda p: _npz_case(p, y_test=None), ["missing arrays", "y_test"]),
    "object-array": (
        lambda p: _npz_case(p, y_train=np.array([[1], "a"] * 20, dtype=object)),
        ["object arrays", "refused"],
    ),
    "one-class": (lambda p: _npz_case(p, y_train=np.zeros(40, np.int64)), ["1 class"]),
    "test-label-out-of-range": (lambda p: _npz_case(p, y_test=np.full(12, 9)), ["out of range"]),
    "negative-label": (lambda p: _npz_case(p, y_train=np.arange(40) % 4 - 1), ["out of range"]),
    "label-count": (lambda p: _npz_case(p, y_train=np.arange(39) % 4), ["39 labels for 40 images"]),
    "normalized-pixels": (lambda p: _npz_case(p, x_test=np.full((12, 16, 16, 3), -0.5, np.float32)), ["normalized"]),
    "empty": (lambda p: _npz_case(p, x_test=np.zeros((0, 16, 16, 3), np.uint8), y_test=np.zeros(0)), ["no images"]),
    "shape-mismatch": (lambda p: _npz_case(p, x_test=np.zeros((12, 8, 8, 3), np.uint8)), ["one shape"]),
    "not-a-zip": (lambda p: _garbage(p / "x.npz"), ["not a readable .npz"]),
    "no-file": (lambda p: p / "absent.npz", ["no such file"]),
    "folder-empty": (lambda p: _folder_case(p, "empty"), ["no class folders"]),
    "folder-one-class": (lambda p: _folder_case(p, "one-class"), ["1 class"]),
    "folder-mixed-sizes": (lambda p: _folder_case(p, "mixed-sizes"), ["mixed sizes", "data.image_size"]),
    "folder-mixed-modes": (lambda p: _folder_case(p, "mixed-modes"), ["mixed modes", "data.channels"]),
    "folder-class-without-images": (lambda p: _folder_case(p, "class-without-images"), ["fox", "no image files"]),
    "folder-not-an-image": (lambda p: _folder_case(p, "not-an-image"), ["broken.png"]),
    "folder-unknown-test-class": (lambda p: _folder_case(p, "unknown-test-class"), ["yak"]),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_own_data_is_one_line_data_error(tmp_path, kind):
    make, words = BAD[kind]
    path = make(tmp_path)
    with pytest.raises(DataError) as err:
        load_data(str(path))
    message = str(err.value)
    assert "\n" not in message
    assert all(w.lower() in message.lower() for w in words), message


def test_mixed_sizes_are_fine_with_a_resize_and_mixed_modes_with_channels(tmp_path):
    root = _folder_case(tmp_path, "mixed-sizes")
    assert load_data(str(root), image_size=[10, 12]).in_shape == (1, 10, 12)
    other = _folder_case(tmp_path / "b", "mixed-modes")
    assert load_data(str(other), channels=3).in_shape == (3, 10, 12)


def _steps(out: Path) -> dict:
    return json.loads((out / "steps.json").read_text())["steps"]


def test_npz_through_the_build_shapes_the_model_and_keys_the_cache(tmp_path):
    """A 3x16x16, 4-class .npz trains lenet5_fire built for that input; changed content retrains."""
    path = write_npz(tmp_path / "d.npz")
    out = tmp_path / "b"
    overrides = {**TINY, "data.dataset": str(path), "out_dir": str(out), "compress.enabled": False}
    results = run_build("lenet5_fire", "pynq-z2", overrides, until="train")
    train = results["train"]
    assert (train["train_samples"], train["val_samples"], train["test_samples"]) == (36, 4, 12)
    state = torch.load(out / "model" / "float.pt", weights_only=True)
    assert state["features.stem.weight"].shape[1] == 3  # three input channels
    assert next(v for k, v in reversed(state.items()) if k.endswith("weight")).shape[0] == 4  # four logits
    run_build("lenet5_fire", "pynq-z2", overrides, until="train")
    assert _steps(out)["train"]["skipped"]
    write_npz(path, seed=1)  # same shapes, other pixels
    run_build("lenet5_fire", "pynq-z2", overrides, until="train")
    assert not _steps(out)["train"]["skipped"]


def test_cli_bad_npz_is_one_line_exit_3(tmp_path, capsys, monkeypatch):
    from flows.build import main as build_main

    monkeypatch.chdir(tmp_path)
    path = write_npz(tmp_path / "d.npz", y_train=np.zeros(40, np.int64))
    code = build_main(["lenet5_fire", "--dataset", str(path), "--out", str(tmp_path / "b"), "--until", "train"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 3 and len(err) == 1 and err[0].startswith("error: ") and "1 class" in err[0]
    assert not (tmp_path / "b" / "model" / "float.pt").exists()


@pytest.mark.parametrize("key, value", [("data.image_size", 0), ("data.image_size", [8]), ("data.channels", 2)])
def test_bad_own_data_settings_are_usage_errors(key, value):
    from flows.config import make_config
    from flows.errors import UsageError

    with pytest.raises(UsageError, match=key):
        make_config("lenet5", {key: value})
