"""Dataflow verification without Vivado: a concurrent bounded-FIFO C simulation of an io_stream design.

The C simulation (flows/csim.py) runs each layer function to completion over unbounded streams, so
it cannot see a dataflow region that deadlocks on the board because a FIFO on a fork/join is too
shallow. This package compiles the same project with a bounded blocking `hls::stream`
(`include/hls_stream.h`, first on the include path) and a generated top that runs every process of
the top function in its own thread (`include/fireflow_dataflow.h`), then:

- `design`: the network read from hls4ml's ModelGraph (processes, streams, depths, fork/joins);
- `generate`: the generated C++ and `design.json` in `<project>/dataflow/` (hls4ml's output untouched);
- `runner`: g++ and a watched child process per run (`SimRun`);
- `sizing`: the deadlock diagnosis and the search for the smallest passing depths;
- `project`: the two uses in a build, FIFO sizing at conversion and the check after the C simulation.
"""

from flows.dataflow.design import Design, ForkJoin, design_from_model, unsupported
from flows.dataflow.generate import runtime_digest
from flows.dataflow.project import apply_depths, check_project, describe_failure, fifo_rows, prepare_dataflow
from flows.dataflow.runner import SimRun, compile_simulator, simulate
from flows.dataflow.sizing import Sizing, diagnose, search_depths

__all__ = [
    "Design",
    "ForkJoin",
    "SimRun",
    "Sizing",
    "apply_depths",
    "check_project",
    "compile_simulator",
    "describe_failure",
    "design_from_model",
    "diagnose",
    "fifo_rows",
    "prepare_dataflow",
    "runtime_digest",
    "search_depths",
    "simulate",
    "unsupported",
]
