"""`--config config.yaml` round trip (issue 15 item 1): the config.yaml a build writes beside config.json
reads back into the same config, with its nested tables, lists, None and float values intact."""

from __future__ import annotations

import json

from flows.api import resolve_config
from flows.config import to_yaml

SETTINGS = {
    "train.epochs": 3,
    "train.lr": 0.00125,
    "seed": 7,
    "hls.io_type": "io_parallel",
    "hls.clock_period_ns": 7.5,
    "arch.expand": [20, 28],
    "compress.density": {"features.stem": 0.4, "classifier": 0.125},
    "data.dataset": "digits",
}


def test_config_yaml_round_trip(tmp_path):
    cfg = resolve_config("lenet5_fire", "pynq-z2", SETTINGS)
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg))
    text = path.read_text()
    assert not text.lstrip().startswith("{") and "train:\n" in text  # block YAML, not JSON
    again = resolve_config("lenet5_fire", "pynq-z2", config_file=str(path))
    assert again == cfg and again.to_json() == cfg.to_json()
    assert again.compress.density == {"features.stem": 0.4, "classifier": 0.125} and again.arch["expand"] == [20, 28]
    # the YAML file wins over the recipe, and a later --set over the file
    later = resolve_config("lenet5_fire", "pynq-z2", {"train.epochs": 9}, config_file=str(path))
    assert later.train.epochs == 9 and later.train.lr == 0.00125
    (tmp_path / "config.json").write_text(cfg.to_json())
    assert resolve_config("lenet5_fire", "pynq-z2", config_file=str(tmp_path / "config.json")) == again
    assert json.loads(again.to_json())["hls"]["clock_period_ns"] == 7.5
