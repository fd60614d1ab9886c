"""Distributed arithmetic (da4ml) as a per-layer hls4ml strategy, its cost, and open-source synthesis of it.

- `flows.da.solver`: da4ml's solution of a layer's constant matrix-vector product, cached on disk;
  `da_cost(weights, input_type, ...)` for the fit search (labelled `source: "da4ml"`).
- `flows.da.hls_pass`: the hls4ml pass and flow that build DA layers on VivadoAccelerator, Vivado
  and Vitis; `da_layer_settings`, `set_solver_config`, `da_flow`, `da_layers`.
- `flows.da.rtl`: the Verilog da4ml emits for a solution, synthesized with yosys (`source: "yosys"`)
  and simulated with verilator, each skipped (and labelled so) when the tool is not on PATH.
"""
