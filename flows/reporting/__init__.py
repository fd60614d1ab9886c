"""The build report: `report.json` (machine-readable), `report.md` (what users read) and `plots/*.png`.

- `summary.py`: the report dict from the typed step results, and its markdown.
- `compression.py`, `hardware.py`: the Deep Compression and hardware sections.
- `plots.py`: the pictures.
Sections appear when the step that measures them ran. Every hardware figure carries its source
(`vivado`, `vitis` or `estimate`); sources are never mixed. The `report` step (flows/steps/report.py)
writes them.
"""
