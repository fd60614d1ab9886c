"""hls4ml's project writers with this flow's two additions to the emitted C++; `write_project` uses them.

- Shift-register FIFOs: a stream variable the `SizeStreamFifos` pass marked (`fifo_impl` = 'srl')
  gets a storage pragma after its STREAM pragma, rendered by the writer's `_make_array_pragma` (the
  hook hls4ml's writer calls for every variable's pragma): Vivado HLS `RESOURCE core=FIFO_SRL`,
  Vitis HLS `BIND_STORAGE type=fifo impl=srl`.
- A pipelined AXI-stream wrapper (VivadoAccelerator, io_stream): hls4ml leaves the wrapper's copy
  loops sequential (~7 cycles per pixel). The wrapper is rendered from `AXI_STREAM_WRAPPER` with a
  `PIPELINE II=1` pragma in both loops. Without the pragmas the template must reproduce hls4ml's own
  wrapper byte for byte: it is checked on every write, so a changed hls4ml fails here, loudly,
  instead of losing or corrupting the pipelining.

`write_project(hls_model, pipeline_axi)` does what hls4ml's writer flow does (a new stamp, then
`write_hls`) with these writers; `ModelGraph.write()` would use hls4ml's plain ones.
"""

from __future__ import annotations

from pathlib import Path

from hls4ml.model.optimizer import get_optimizer
from hls4ml.writer import VitisWriter, VivadoAcceleratorWriter, VivadoWriter

from flows.errors import ToolError
from flows.hls_passes import FIFO_IMPL_ATTR

AXI_PIPELINE_PRAGMA = "#pragma HLS PIPELINE II=1 // fireflow: one AXI-stream word per clock"

# hls4ml 1.3's myproject_axi.cpp for io_stream with the axi_stream interface; {pipeline} is the only addition
AXI_STREAM_WRAPPER = """\
#include "{project}_axi.h"

void {project}_axi(input_axi_t in[N_IN], output_axi_t out[N_OUT]) {{

    #pragma HLS INTERFACE axis port=in
    #pragma HLS INTERFACE axis port=out
    #pragma HLS INTERFACE ap_ctrl_none port=return
    #pragma HLS DATAFLOW

    bool is_last = false;
    hls::stream<{input_t}> in_local("input_1");
    hls::stream<{result_t}> out_local("output_1");

    #pragma HLS STREAM variable=in_local depth={in_depth}
    #pragma HLS STREAM variable=out_local depth={out_depth}

    for(unsigned i = 0; i < N_IN / {input_t}::size; ++i) {{
{pipeline}        {input_t} ctype;
        #pragma HLS DATA_PACK variable=ctype
        for(unsigned j = 0; j < {input_t}::size; j++) {{
            ctype[j] = typename {input_t}::value_type(in[i * {input_t}::size + j].data);
            is_last |= (in[i * input_t::size + j].last == 1)? true : false;
        }}
        in_local.write(ctype);
    }}

    {project}(in_local, out_local);

    for(unsigned i = 0; i < N_OUT / {result_t}::size; ++i) {{
{pipeline}        {result_t} ctype = out_local.read();
        for(unsigned j = 0; j < {result_t}::size; j++) {{
            bool last = (is_last && (i * {result_t}::size + j == N_OUT - 1)) ? true : false;
            out[i * {result_t}::size + j] = output_axi_t(ctype[j], last);
        }}
    }}
}}
"""


def srl_pragma(backend: str, variable: str) -> str:
    """The storage pragma that binds a FIFO to shift registers, in the backend's HLS dialect."""
    if backend == "Vitis":
        return f"#pragma HLS BIND_STORAGE variable={variable} type=fifo impl=srl"
    return f"#pragma HLS RESOURCE variable={variable} core=FIFO_SRL"


class SrlFifoWriterMixin:
    """Adds the shift-register storage pragma after the STREAM pragma of each marked variable."""

    backend_name = "Vivado"

    def _make_array_pragma(self, variable):
        pragma = super()._make_array_pragma(variable)
        if getattr(variable, FIFO_IMPL_ATTR, None) == "srl" and str(pragma).startswith("#pragma HLS STREAM"):
            pragma += "\n    " + srl_pragma(self.backend_name, variable.name)
        return pragma


class FireflowVivadoWriter(SrlFifoWriterMixin, VivadoWriter):
    """hls4ml's Vivado writer with shift-register FIFOs."""


class FireflowVitisWriter(SrlFifoWriterMixin, VitisWriter):
    """hls4ml's Vitis writer with shift-register FIFOs."""

    backend_name = "Vitis"


class FireflowAcceleratorWriter(SrlFifoWriterMixin, VivadoAcceleratorWriter):
    """hls4ml's VivadoAccelerator writer with shift-register FIFOs and, optionally, a pipelined AXI wrapper."""

    def __init__(self, pipeline_axi: bool = True):
        super().__init__()
        self.pipeline_axi = pipeline_axi

    def write_axi_wrapper(self, model):
        super().write_axi_wrapper(model)
        config = self.vivado_accelerator_config
        if not self.pipeline_axi or model.config.get_config_value("IOType") != "io_stream":
            return  # io_parallel: hls4ml pipelines the wrapper's loops itself
        if config.get_interface() != "axi_stream":
            return
        path = Path(model.config.get_output_dir()) / "firmware" / f"{model.config.get_project_name()}_axi.cpp"
        if path.read_text() != render_axi_stream_wrapper(model, config, pipeline=False):
            raise ToolError(
                f"hls4ml wrote an AXI wrapper ({path}) that differs from the one fireflow pipelines "
                "(flows/hls_writer.py AXI_STREAM_WRAPPER, from hls4ml 1.3): update the template for this hls4ml "
                "version, or set hls.pipeline_axi=false"
            )
        path.write_text(render_axi_stream_wrapper(model, config, pipeline=True))


def render_axi_stream_wrapper(model, accelerator_config, pipeline: bool) -> str:
    """myproject_axi.cpp for an io_stream model with the axi_stream interface, with or without PIPELINE pragmas.

    `accelerator_config` is hls4ml's `VivadoAcceleratorConfig` of the model (the writer makes one)."""
    _, _, inp, out = accelerator_config.get_corrected_types()
    return AXI_STREAM_WRAPPER.format(
        project=model.config.get_project_name(),
        input_t=inp.type.name,
        result_t=out.type.name,
        in_depth=model.get_input_variables()[0].pragma[1],
        out_depth=model.get_output_variables()[0].pragma[1],
        pipeline=f"        {AXI_PIPELINE_PRAGMA}\n" if pipeline else "",
    )


def writer_for(backend: str, pipeline_axi: bool):
    """A fresh writer for the backend (`pipeline_axi` matters for VivadoAccelerator only)."""
    if backend == "VivadoAccelerator":
        return FireflowAcceleratorWriter(pipeline_axi)
    if backend == "Vitis":
        return FireflowVitisWriter()
    if backend == "Vivado":
        return FireflowVivadoWriter()
    raise ToolError(f"fireflow writes hls4ml projects for Vivado, Vitis and VivadoAccelerator, not {backend}")


def write_project(hls_model, pipeline_axi: bool) -> None:
    """Write the project into the model's output folder: a new stamp, then the writer (as hls4ml's writer flow)."""
    get_optimizer("make_stamp").transform(hls_model)
    writer_for(hls_model.config.backend.name, pipeline_axi).write_hls(hls_model)
