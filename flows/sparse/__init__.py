"""A sparse, weight-shared Dense kernel (the EIE idea) as an hls4ml extension of this project.

- `flows.sparse.layout`: the weight layout (codebook, per-PE relative-index entries), the PE count
  for a cycle budget, and a numpy reference of the PEs' walk. Pure numpy.
- `flows.sparse.extension`: the hls4ml layer class, the optimizer pass that replaces a Dense layer
  configured ``"Strategy": "sparse"``, its config/function templates, the C++ header
  ``nnet_sparse_dense.h`` (package data) and the flow (`register_sparse_dense`, `with_sparse_dense`).
- Its cost model is `flows.estimator.sparse`.

Import the submodules; this package itself imports nothing (the layout needs no hls4ml).
"""
