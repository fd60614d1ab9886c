"""The `search` section of the build configuration: compression chosen for an accuracy budget
(`--max-accuracy-drop`, step `search`, flows/search.py); validated here.

A part of flows/config.py (which imports `SearchConfig`), kept apart to keep both small.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flows.errors import UsageError

OBJECTIVES = ("lut", "images_per_second")


@dataclass
class SearchConfig:
    """Compression chosen for an accuracy budget (`--max-accuracy-drop`, step `search`, flows/search.py).

    With `max_accuracy_drop` set (percentage points below the float model, on the validation split), a
    sensitivity analysis after float training picks per-layer densities, conv/fc weight bits, activation
    bits and (when structure.enabled) the structured-pruning ratio for the least hardware `objective`
    (estimate) predicted within the budget; those choices replace the recipe's for the later steps.
    """

    max_accuracy_drop: float | None = None  # None: the recipe as given
    objective: str = "lut"  # "lut" or "images_per_second" (estimate of the fitted design)
    densities: list[float] = field(default_factory=lambda: [1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1, 0.05])
    weight_bits: list[int] = field(default_factory=lambda: [8, 6, 5, 4, 3])
    act_bits: list[int] = field(default_factory=lambda: [8, 6, 5, 4])
    structure_ratios: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5])
    tolerances: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0])  # x the budget
    max_samples: int | None = 2000  # validation images of the sensitivity analysis (None: all)
    finetune_epochs: int = 6  # epochs of QAT of a candidate before its accuracy is judged (fewer: too pessimistic)
    max_candidates: int = 4  # candidates fine-tuned at most (cheapest hardware first)


def validate_search(s: SearchConfig) -> None:
    if s.max_accuracy_drop is not None and not 0 <= s.max_accuracy_drop < 100:
        raise UsageError(f"config search.max_accuracy_drop = {s.max_accuracy_drop} must be in [0, 100) (points)")
    if s.objective not in OBJECTIVES:
        raise UsageError(f"config search.objective = {s.objective!r} is not valid; choose one of {list(OBJECTIVES)}")
    lists = (("densities", s.densities, 0, 1, float), ("weight_bits", s.weight_bits, 2, 16, int),
             ("act_bits", s.act_bits, 2, 16, int), ("structure_ratios", s.structure_ratios, 0, 0.95, float),
             ("tolerances", s.tolerances, 0, 1000, float))
    for name, values, lo, hi, kind in lists:
        ok = isinstance(values, list) and values and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi and (kind is float or v == int(v))
            for v in values
        )
        if not ok or (name == "densities" and 0 in values):
            raise UsageError(f"config search.{name} = {values!r} must be a non-empty list of numbers in [{lo}, {hi}]"
                             + (" (no 0)" if name == "densities" else ""))
    for name, value, zero in (("max_samples", s.max_samples, False), ("finetune_epochs", s.finetune_epochs, True),
                              ("max_candidates", s.max_candidates, False)):
        if value is not None and (value < 0 or (value == 0 and not zero)):
            raise UsageError(f"config search.{name} = {value!r} must be {'>= 0' if zero else '> 0'}")
