"""Config files on disk: JSON or YAML in, YAML out, and the layering of a file over a recipe.

`read_config_file` returns the parsed object of a `--config` file or raises a one-line UsageError
(missing, a folder, not UTF-8, invalid JSON/YAML, not an object). YAML is read with `yaml.safe_load`:
data only, nothing executes; JSON rejects NaN/Infinity. `merge_config` lays a (possibly partial) file
over the defaults and the model's recipe; `dump_yaml` writes the `config.yaml` of a build folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from flows.errors import UsageError


def read_config_file(path: str | Path) -> dict:
    """The parsed content of a JSON or YAML config file, or a one-line UsageError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"config file {path} is a folder; give a config.json or config.yaml file") from None
    except UnicodeDecodeError:
        raise UsageError(f"config file {path} is not UTF-8 text; give a config.json or config.yaml file") from None
    except OSError as exc:
        raise UsageError(f"config file {path} cannot be read ({exc.strerror or exc})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}" if where is not None else ""
            raise UsageError(f"config file {path} is not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    else:
        try:
            data = json.loads(text, parse_constant=reject_json_constant)
        except json.JSONDecodeError as exc:
            raise UsageError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {path}: expected an object of config keys, got {type(data).__name__}")
    return data


def reject_json_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a valid number", name, 0)


def merge_config(base: dict, data: dict) -> dict:
    """A config file's keys over `base` (defaults + the model's recipe): sections are merged key by
    key, so a partial file changes only what it names; a complete config.json gives itself back."""
    out = json.loads(json.dumps(base))
    for key, value in data.items():
        if isinstance(out.get(key), dict) and key != "arch":
            if not isinstance(value, dict):
                raise UsageError(f"config {key}: expected an object of {key} settings, got {value!r}")
            out[key].update(value)
        else:
            out[key] = value
    return out


def dump_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False)
