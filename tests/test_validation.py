"""The validation split (issue 14 item 1): carved deterministically from the training data, disjoint from
it, sized by data.val_fraction / data.val_size, stable for a given data.val_seed; the test set untouched."""

from __future__ import annotations

import pytest
import torch

from flows.config import make_config
from flows.data import Dataset, load_data, split_validation
from flows.errors import DataError, UsageError
from flows.train import evaluate


def numbered(n: int) -> Dataset:
    """Images whose first pixel is their index, so a split can be traced back to the original order."""
    images = torch.zeros((n, 1, 4, 4), dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return Dataset(images, torch.arange(n) % 3)


def ids(split: Dataset) -> list[int]:
    return split.images[:, 0, 0, 0].tolist()


def test_split_is_disjoint_complete_ordered_and_stable():
    data = numbered(200)
    train, val = split_validation(data, 0.1, None, seed=0)
    assert len(val) == 20 and len(train) == 180
    assert sorted(ids(train) + ids(val)) == list(range(200))
    assert ids(train) == sorted(ids(train)) and ids(val) == sorted(ids(val))  # original order kept
    again_train, again_val = split_validation(numbered(200), 0.1, None, seed=0)
    assert ids(again_val) == ids(val) and ids(again_train) == ids(train)
    assert ids(split_validation(data, 0.1, None, seed=1)[1]) != ids(val)  # its own seed moves it
    assert torch.equal(val.labels, torch.tensor(ids(val)) % 3)  # labels travel with their images


def test_split_size_wins_over_fraction_and_zero_disables():
    data = numbered(50)
    assert len(split_validation(data, 0.5, 7)[1]) == 7
    train, val = split_validation(data, 0.0, None)
    assert train is data and len(val) == 0 and val.images.shape[1:] == data.images.shape[1:]
    assert split_validation(data, 0.3, 0)[0] is data


def test_a_split_that_leaves_nothing_to_train_on_is_a_data_error():
    with pytest.raises(DataError, match="val_size=10 .* leaves none"):
        split_validation(numbered(10), 0.1, 10)


def test_digits_bundle_carries_the_validation_split():
    full = load_data("digits", val_fraction=0.0)
    bundle = load_data("digits", val_fraction=0.1)
    assert len(full.val) == 0
    assert len(bundle.val) == round(0.1 * len(full.train))
    assert len(bundle.train) + len(bundle.val) == len(full.train)
    assert torch.equal(bundle.test.images, full.test.images)  # the test set is never touched
    # every validation image comes from the training data and none is trained on
    train_rows = {bytes(x.numpy().tobytes()) for x in full.train.images}
    kept_rows = {bytes(x.numpy().tobytes()) for x in bundle.train.images}
    assert all(bytes(x.numpy().tobytes()) in train_rows - kept_rows for x in bundle.val.images)
    assert bundle.fingerprint() != full.fingerprint()
    assert load_data("digits", val_fraction=0.1).fingerprint() == bundle.fingerprint()
    assert load_data("digits", val_fraction=0.1, val_seed=3).fingerprint() != bundle.fingerprint()


def test_max_train_is_cut_before_the_split():
    bundle = load_data("digits", max_train=100, val_size=10)
    assert (len(bundle.train), len(bundle.val)) == (90, 10)


def test_evaluate_api_on_the_validation_split():
    bundle = load_data("synthetic", val_fraction=0.2)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, bundle.num_classes))
    result = evaluate(model, bundle.val, device="cpu")
    assert set(result) == {"accuracy", "loss", "error"} and 0 <= result["accuracy"] <= 1
    assert result["error"] == pytest.approx(1 - result["accuracy"])
    assert evaluate(model, load_data("synthetic", val_fraction=0).val) == {
        "accuracy": None,
        "loss": None,
        "error": None,
    }


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("data.val_fraction", 1.0, "val_fraction"),
        ("data.val_fraction", -0.1, "val_fraction"),
        ("data.val_size", -1, "val_size"),
        ("data.val_seed", -1, "val_seed"),
    ],
)
def test_bad_split_settings_are_usage_errors(key, value, words):
    with pytest.raises(UsageError, match=words):
        make_config("lenet5", {key: value})


def test_default_is_a_ten_percent_split():
    cfg = make_config("lenet5")
    assert cfg.data.val_fraction == 0.1 and cfg.data.val_size is None
