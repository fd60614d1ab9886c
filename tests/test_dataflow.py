"""flows/dataflow/: the concurrent bounded-FIFO simulation catches a Fire-module deadlock and sizes the FIFOs.

A small Fire network (random weights, activation scales calibrated on random images, 10x10 input so
the Fire module runs at 6x6) is exported and converted for pynq-z2 (VivadoAccelerator, io_stream),
and its dataflow simulation compiled once. With every FIFO 2 deep the first image deadlocks at the
Fire join, and the diagnosis names the fork/join, the blocked processes and the full and empty FIFOs.
`prepare_dataflow` (what the convert step runs) finds the smallest passing depths, writes them into
the project's STREAM pragmas through hls4ml's writer, and the check then passes on 6 back-to-back
images with outputs identical to the C simulation's; one word less on the critical FIFO deadlocks.
In a real build (the session's lenet5_fire on digits) the `dataflow` step passed, and with every
FIFO of its project 2 deep the step fails with DeadlockError (exit 7) and dataflow.json says where.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from flows.boards import load_board
from flows.config import DataflowConfig, HLSConfig, QuantConfig, config_from_dict
from flows.context import DATAFLOW_FILE, BuildContext
from flows.convert import convert
from flows.csim import compile_project, load_library
from flows.dataflow import (
    check_project,
    design_from_model,
    diagnose,
    prepare_dataflow,
    simulate,
)
from flows.errors import DeadlockError
from flows.export import clean_qonnx, export_brevitas
from flows.results import RESULT_TYPES
from flows.steps import dataflow as dataflow_step
from models.fire import FireNet, FireNetSpec
from models.quant import QuantSpec
from tests.conftest import copy_build

IN_SHAPE = (1, 10, 10)
STREAM = re.compile(r"#pragma HLS STREAM variable=(\w+) depth=(\d+)")


@pytest.fixture(scope="module")
def fire_project(tmp_path_factory):
    """(project folder, its design with the flow's analytical depths, compiled simulation, sizing summary)
    of a one-Fire network; `prepare_dataflow` (as the convert step runs it) compiled, sized and rewrote it.
    The simulation reads no depths from the sources: the same program runs any depths."""
    torch.manual_seed(0)
    arch = FireNetSpec(stem_channels=4, stem_kernel=5, fires=((2, 4, 4),), pool_after=())
    net = FireNet(QuantSpec(), arch, IN_SHAPE, 4)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(32, *IN_SHAPE))
    net.eval()
    out = tmp_path_factory.mktemp("dataflow")
    export_brevitas(net, IN_SHAPE, out / "raw.onnx")
    wrapper = clean_qonnx(out / "raw.onnx", channels_last=True)
    model = convert(wrapper, out, HLSConfig(), QuantConfig(), load_board("pynq-z2"))[0]
    project = out / "hls4ml_prj"
    design = design_from_model(model)
    summary = prepare_dataflow(model, project, DataflowConfig(), pipeline_axi=True)
    return project, design, load_exe(project), summary


def _inputs(n: int) -> np.ndarray:
    """Images on the input quantizer's 8-bit grid, in the hardware (channels-last) layout."""
    return np.round(np.random.default_rng(1).random((n, int(np.prod(IN_SHAPE)))) * 255) / 256


def test_tiny_fifos_deadlock_at_the_fire_join_and_the_diagnosis_names_it(fire_project):
    _, design, exe, _ = fire_project
    (group,) = design.groups
    assert group.fork.startswith("clone_") and group.join.startswith("Concat")
    assert len(group.branches) == 2 and min(len(b) for b in group.branches) == 2  # 1x1 branch: clone->conv->concat

    run = simulate(exe, _inputs(2), {s: 2 for s in design.depths()}, timeout_s=20)
    assert run.status == "deadlock" and run.outputs is None
    diagnosis = diagnose(design, run)
    assert diagnosis["fork_joins"] == [group.name]
    assert f"at the fork/join {group.name}" in diagnosis["message"]
    assert diagnosis["image"] == 1
    blocked = {(b["process"], b["op"]): b for b in diagnosis["blocked"]}
    fork = blocked[(group.fork, "write")]  # the clone waits on a full FIFO of the 1x1 branch ...
    assert fork["stream"] in group.branches[0] and fork["fill"] == fork["capacity"] == 2
    join = blocked[(group.join, "read")]  # ... while the concat waits on the empty 3x3 branch
    assert join["stream"] in group.branches[1] and join["fill"] == 0
    assert f"{group.fork} blocked writing {fork['stream']} (full, 2/2)" in diagnosis["message"]

    # the flow's analytical depths ("two padded rows + 16") pass
    assert simulate(exe, _inputs(2), design.depths(), timeout_s=20).ok


def test_sized_fifos_are_written_into_the_project_and_pass_bit_exact(fire_project):
    project, design, exe, summary = fire_project
    sizing = summary["sizing"]
    assert sizing["analytical"] == design.depths()
    (group,) = design.groups
    minimum, chosen = sizing["minimum"], sizing["chosen"]
    # the 1x1 branch must hold the lead of the 1x1 path over the 3x3 one: at least one padded row
    width = 6  # the squeezed map is 6x6
    assert sum(minimum[s] for s in group.branches[0]) >= width + 2
    assert all(minimum[s] == 1 for s in design.depths() if s not in group.streams)
    assert all(chosen[s] == max(2, -(-minimum[s] * 3 // 2)) for s in chosen)  # margin 0.5, at least 2
    assert sum(chosen.values()) < sum(sizing["analytical"].values())

    # the HLS pragmas carry the chosen depths (the top function's streams; the in/out ports are the wrapper's)
    top = (project / "firmware" / "myproject.cpp").read_text()
    pragmas = {name: int(d) for name, d in STREAM.findall(top)}
    assert pragmas and all(pragmas[s] == chosen[s] for s in pragmas)
    axi = (project / "firmware" / "myproject_axi.cpp").read_text()
    assert f"in_local depth={chosen[design.input_stream]}" in axi

    compile_project(project, "myproject")
    x = _inputs(6)
    reference = load_library(project, "myproject", design.n_in, design.n_out).run(x)
    sized, run = check_project(project, x, timeout_s=20)
    assert run.ok and sized.depths() == chosen
    assert np.array_equal(run.outputs, reference)
    assert run.high_water[design.input_stream] <= chosen[design.input_stream]

    # minimal: one word less on the FIFO that carries the 1x1 branch's lead deadlocks, at the same join
    critical = max(group.branches[0], key=lambda s: minimum[s])
    short = simulate(exe, x[:2], {**minimum, critical: minimum[critical] - 1}, timeout_s=20)
    assert short.status == "deadlock" and diagnose(sized, short)["fork_joins"] == [group.name]
    assert simulate(exe, x[:2], minimum, timeout_s=20).ok


def load_exe(project):
    return project / "dataflow" / "myproject_dataflow"


def test_the_step_list_has_dataflow_after_csim_for_io_stream_only():
    from flows.config import make_config
    from flows.flow import step_names_for

    names = step_names_for(make_config("lenet5_fire", {"compress.enabled": False, "structure.enabled": False}))
    assert names[names.index("csim") + 1] == "dataflow"
    for off in ({"dataflow.enabled": False}, {"hls.io_type": "io_parallel"}):
        cfg = make_config("lenet5_fire", {"compress.enabled": False, "structure.enabled": False, **off})
        assert "dataflow" not in step_names_for(cfg)


def test_dataflow_config_is_validated():
    from flows.config import make_config
    from flows.errors import UsageError

    for bad in ({"dataflow.images": 1}, {"dataflow.margin": -0.1}, {"dataflow.min_depth": 0}):
        with pytest.raises(UsageError, match="dataflow"):
            make_config("lenet5_fire", bad)
    assert replace(DataflowConfig(), images=2).images == 2


def test_a_build_checks_its_dataflow_and_a_deadlock_fails_with_exit_7(fire_stream_build, tmp_path):
    src, report = fire_stream_build
    checked = json.loads((src / DATAFLOW_FILE).read_text())
    assert checked["status"] == "passed" and checked["bit_exact"] is True and checked["images"] == 20
    assert checked["fork_joins"] and report["dataflow"]["fork_joins"] == checked["fork_joins"]
    assert checked["sizing"]["runs"] > 0 and "## Dataflow check" in (src / "report.md").read_text()
    convert_metrics = json.loads((src / "steps.json").read_text())["steps"]["convert"]["metrics"]
    fifo = convert_metrics["dataflow"]["fifo_estimate"]
    assert fifo["after"]["LUT"] <= fifo["before"]["LUT"]  # the estimate costs the sized depths

    # the same project with every FIFO 2 deep: the step fails (exit 7) and dataflow.json says where
    out = copy_build(src, tmp_path / "b")
    design_file = out / "hls4ml_prj" / "dataflow" / "design.json"
    design = json.loads(design_file.read_text())
    for stream in design["streams"]:
        stream["depth"] = 2
    design_file.write_text(json.dumps(design))
    cfg = config_from_dict({**json.loads((out / "config.json").read_text()), "out_dir": str(out)})
    ctx = BuildContext(cfg=cfg, board=load_board(cfg.board), out=out)
    records = json.loads((out / "steps.json").read_text())["steps"]
    for name in ("train", "qat", "export", "convert", "csim"):
        ctx.results.set(name, RESULT_TYPES[name].from_dict(records[name]["metrics"]))
    with pytest.raises(DeadlockError, match="deadlock in image 1 at the fork/join clone_") as failure:
        dataflow_step.run(ctx)
    assert failure.value.exit_code == 7
    saved = json.loads((out / DATAFLOW_FILE).read_text())
    assert saved["status"] == "deadlock" and saved["diagnosis"]["fork_joins"][0] in checked["fork_joins"]
    assert any(b["op"] == "write" and b["fill"] == b["capacity"] == 2 for b in saved["diagnosis"]["blocked"])
