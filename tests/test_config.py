"""The typed config: JSON round trip, overrides, and errors that name the field."""

from __future__ import annotations

import json

import pytest

from flows.api import resolve_config
from flows.config import BuildConfig, config_from_dict, load_config, make_config, parse_override
from flows.errors import UsageError


def test_round_trip_through_json(tmp_path):
    cfg = make_config("lenet5_fire", {"train.epochs": 3, "hls.layer_reuse": {"Conv2D_Conv_0": 4}})
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json())
    assert load_config(path) == cfg
    assert cfg.train.epochs == 3 and cfg.hls.layer_reuse == {"Conv2D_Conv_0": 4}


def test_defaults_are_the_documented_ones():
    cfg = BuildConfig(model="lenet5_fire")
    assert (cfg.quant.weight_bits, cfg.quant.act_bits) == (5, 8)
    assert cfg.board == "pynq-z2" and cfg.hls.io_type == "io_stream"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"model": "m", "train": {"epochs": "ten"}}, "train.epochs: expected an integer"),
        ({"model": "m", "train": {"lr": True}}, "train.lr: expected a number"),
        ({"model": "m", "hls": {"strategy": "Fast"}}, "hls.strategy"),
        ({"model": "m", "bogus": 1}, "unknown keys ['bogus']"),
        ({"model": "m", "data": {"dataset": "imagenet"}}, "data.dataset"),
        ({"model": "m", "hls": {"project_name": "my-project"}}, "C identifier"),
        ({"model": "m", "hls": {"layer_precision": {"Relu_0": "float"}}}, "layer_precision"),
        ({"model": "m", "hls": {"objective": "speed"}}, "hls.objective"),
        ({"model": "m", "hls": {"target_images_per_second": -5}}, "hls.target_images_per_second"),
        ({"model": "m", "hls": {"target_images_per_second": 1e5, "objective": "latency"}}, "hls.objective=area"),
    ],
)
def test_invalid_values_name_the_field(data, needle):
    with pytest.raises(UsageError) as err:
        config_from_dict(data)
    assert needle in str(err.value)


def test_parse_override_values_are_json_or_strings():
    assert parse_override("train.epochs=3") == (["train", "epochs"], 3)
    assert parse_override("hls.io_type=io_parallel") == (["hls", "io_type"], "io_parallel")
    assert parse_override("arch.expand=[16,16]") == (["arch", "expand"], [16, 16])


def test_config_file_then_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(make_config("lenet5", {"train.epochs": 7}).to_dict()))
    cfg = resolve_config("lenet5_fire", "pynq-z2", {"seed": 3}, str(path))
    assert cfg.model == "lenet5_fire" and cfg.train.epochs == 7 and cfg.seed == 3


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_config(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_config(bad)
