"""The on-board runner without a board (issue 15): `deploy/run_on_board.py` runs against a stand-in `pynq`
module whose DMA sends the runner's buffers, as raw bytes, through the generated AXI-stream wrapper
(`myproject_axi`, compiled into the build's C-simulation library) with the DMA's TLAST, so the runner's
word type, layout, batching and result parsing are checked bit for bit against the C simulation.
Also: `--bitstream` without Vivado is skipped cleanly, and with stand-in Vivado tools the overlay lands
in deploy/."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from flows.boards import load_board
from flows.config import config_from_dict
from flows.context import QAT_CKPT, BuildContext
from flows.csim import CXX, LIBRARY_RECORD, load_library
from flows.data.dataset import Dataset
from flows.deploy import axi_stream_format, bitstream_tools, word_spec, write_deploy
from flows.errors import ToolError, UsageError
from flows.export import model_input_shape, quantize_inputs, to_hw_layout
from flows.flow import STEP_LOOKUP, step_names_for
from flows.pipeline import run_steps
from flows.results import RESULT_TYPES
from tests.conftest import copy_build

SHIM = """\
#include "{name}_axi.h"
// The generated AXI-stream wrapper, driven word by word as the AXI DMA drives it (TLAST on the last
// input word of a transfer); the stand-in pynq module below calls this through ctypes.
extern "C" {{
unsigned standin_n_in() {{ return N_IN; }}
unsigned standin_n_out() {{ return N_OUT; }}
unsigned standin_in_bytes() {{ return sizeof(T_in); }}
unsigned standin_out_bytes() {{ return sizeof(T_out); }}
void standin_axi(const T_in* in, int last_at_end, T_out* out, unsigned char* out_last) {{
    static input_axi_t a[N_IN];
    static output_axi_t b[N_OUT];
    for (unsigned i = 0; i < N_IN; i++) a[i] = input_axi_t(in[i], (last_at_end && i == N_IN - 1) ? 1 : 0);
    {name}_axi(a, b);
    for (unsigned i = 0; i < N_OUT; i++) {{ out[i] = b[i].data; out_last[i] = (unsigned char)(b[i].last == 1); }}
}}
}}
"""

# a stand-in for the `pynq` package: Overlay / allocate / the AXI DMA of hls4ml's block design (hier_0)
STANDIN_PYNQ = '''\
"""Stand-in pynq: the DMA streams the buffers' bytes through the generated AXI wrapper (C simulation)."""
import ctypes
import os
from pathlib import Path

import numpy as np

_lib = ctypes.cdll.LoadLibrary(os.environ["FIREFLOW_AXI_SHIM"])
N_IN, N_OUT = _lib.standin_n_in(), _lib.standin_n_out()
IN_BYTES, OUT_BYTES = _lib.standin_in_bytes(), _lib.standin_out_bytes()
LOG = Path(os.environ["FIREFLOW_STANDIN_LOG"])


class PynqBuffer(np.ndarray):
    def freebuffer(self):
        with LOG.open("a") as f:
            f.write(f"free {self.shape}\\n")


def allocate(shape, dtype):
    return np.zeros(shape, dtype=dtype).view(PynqBuffer)


class _Send:
    def __init__(self, dma):
        self.dma = dma

    def transfer(self, buf):
        self.dma.sent = bytes(np.ascontiguousarray(buf).tobytes())

    def wait(self):
        pass


class _Recv:
    def __init__(self, dma):
        self.dma = dma

    def transfer(self, buf):
        self.dma.target = buf

    def wait(self):
        sent, target = self.dma.sent, self.dma.target
        per_image = N_IN * IN_BYTES
        if len(sent) % per_image:
            raise RuntimeError(f"DMA would hang: {len(sent)} bytes sent, not a whole number of {per_image}-byte images")
        images = len(sent) // per_image
        out = bytearray()
        last = []
        for i in range(images):
            o = ctypes.create_string_buffer(N_OUT * OUT_BYTES)
            flags = (ctypes.c_ubyte * N_OUT)()
            _lib.standin_axi(sent[i * per_image : (i + 1) * per_image], int(i == images - 1), o, flags)
            out += o.raw
            last += list(flags)
        if len(out) != target.nbytes or last.index(1) != len(last) - 1 or sum(last) != 1:
            raise RuntimeError(f"S2MM: {len(out)} bytes with TLAST at word {last.index(1) if 1 in last else None} "
                               f"into a {target.nbytes}-byte buffer")
        target[...] = np.frombuffer(bytes(out), dtype=target.dtype).reshape(target.shape)
        with LOG.open("a") as f:
            f.write(f"transfer {images}\\n")
        self.dma.sent = None


class _Dma:
    def __init__(self):
        self.sendchannel, self.recvchannel = _Send(self), _Recv(self)


class _Hier:
    def __init__(self):
        self.axi_dma_0 = _Dma()


class Overlay:
    def __init__(self, bitfile):
        bit = Path(bitfile)
        if not bit.is_file() or not bit.with_suffix(".hwh").is_file():
            raise OSError(f"no {bit} with its .hwh")
        self.hier_0 = _Hier()
'''


@pytest.fixture(scope="module")
def board(fire_stream_build, tmp_path_factory):
    """The build, its context and a stand-in pynq whose DMA runs the build's compiled AXI wrapper."""
    out, _ = fire_stream_build
    cfg = config_from_dict(json.loads((out / "config.json").read_text()))
    ctx = BuildContext(cfg=cfg, board=load_board(cfg.board), out=out)
    project = out / "hls4ml_prj"
    lib = project / "firmware" / json.loads((project / LIBRARY_RECORD).read_text())["library"]
    root = tmp_path_factory.mktemp("standin")
    (root / "shim.cpp").write_text(SHIM.format(name="myproject"))
    shim = root / "axi_shim.so"
    firmware = project / "firmware"
    cmd = [CXX, "-O1", "-std=c++11", "-fPIC", "-shared", f"-I{firmware}", f"-I{firmware / 'ap_types'}"]
    cmd += [str(root / "shim.cpp"), str(lib), f"-Wl,-rpath,{lib.parent}", "-o", str(shim)]
    subprocess.run(cmd, check=True, capture_output=True)
    (root / "pynq").mkdir()
    (root / "pynq" / "__init__.py").write_text(STANDIN_PYNQ)
    env = {**os.environ, "PYTHONPATH": str(root), "FIREFLOW_AXI_SHIM": str(shim)}
    return ctx, project, env, root


def run_on_board(deploy: Path, env: dict, log: Path, *args: str) -> subprocess.CompletedProcess:
    """deploy/run_on_board.py as a user runs it on the board (its own process, the stand-in pynq on its path)."""
    return subprocess.run(
        [sys.executable, str(deploy / "run_on_board.py"), *args],
        env={**env, "FIREFLOW_STANDIN_LOG": str(log)},
        capture_output=True,
        text=True,
        cwd=deploy,
    )


def bitstream_config(out: Path):
    data = json.loads((out / "config.json").read_text())
    return config_from_dict({**data, "out_dir": str(out), "hls": {**data["hls"], "bitstream": True}})


def fake_overlay(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.bit").write_bytes(b"bitstream")  # pynq finds the .hwh by the .bit's name
    (folder / "net.hwh").write_text("<hwh/>")
    return {"bit": str(folder / "net.bit"), "hwh": str(folder / "net.hwh")}


def quantized_images(ctx: BuildContext, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` digits images (test split, then training images) quantized and laid out as the hardware takes them."""
    d = ctx.data
    images = torch.cat([d.test.images, d.val.images, d.train.images])[:n]
    labels = torch.cat([d.test.labels, d.val.labels, d.train.labels])[:n]
    model = ctx.load_model(QAT_CKPT)
    xq = quantize_inputs(model, Dataset(images, labels).float_images().double())
    return to_hw_layout(xq.numpy(), model_input_shape(model, d.in_shape)), labels.numpy()


def check_against_csim(ctx, project, env, root, n: int, batch: int, tmp_path: Path) -> None:
    x, labels = quantized_images(ctx, n)
    fmt = axi_stream_format(project, "myproject")
    csim = load_library(project, "myproject", fmt["n_in"], fmt["n_out"]).run(x)  # the C simulation (double)
    deploy = tmp_path / "deploy"
    write_deploy(deploy, fmt, x, labels, csim, {"model": "lenet5_fire", "board": "pynq-z2"}, fake_overlay(tmp_path))
    log = tmp_path / "dma.log"
    proc = run_on_board(deploy, env, log, "--batch", str(batch))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((deploy / "board_results.json").read_text())
    board_out = np.load(deploy / "board_outputs.npy")
    assert result["images"] == n and result["csim_bit_exact_fraction"] == 1.0 and not result["csim_mismatched_images"]
    assert np.array_equal(board_out.astype(np.float32), csim.astype(np.float32))  # every value, as the wire carries it
    assert result["accuracy"] == float((csim.argmax(1) == labels).mean()) > 0.5
    transfers = [int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("transfer")]
    assert transfers == [batch] * (n // batch) + ([n % batch] if n % batch else [])
    assert "accuracy" in proc.stdout and "images/s" in proc.stdout and "bit-exact 1.0000" in proc.stdout


def test_runner_on_the_build_deploy_folder_is_bit_exact_with_csim(fire_stream_build, board, tmp_path):
    """The deploy step's own folder (the images the csim step ran), batches of 50 with a shorter last one."""
    out, report = fire_stream_build
    ctx, project, env, _ = board
    deploy = copy_build(out / "deploy", tmp_path / "deploy")
    meta = json.loads((deploy / "deploy.json").read_text())
    assert meta["overlay"] is None and meta["n_in"] == 784 and meta["input_word"]["kind"] == "float32"
    missing = run_on_board(deploy, env, tmp_path / "log")
    assert missing.returncode == 2 and "--bitstream" in missing.stderr and "Traceback" not in missing.stderr
    x = np.load(deploy / "x_test.npy")
    assert x.dtype == np.float32 and x.shape == (report["csim"]["samples"], 28, 28, 1)  # NHWC, as the hardware
    fake = fake_overlay(tmp_path / "ovl")
    proc = run_on_board(deploy, env, tmp_path / "log", "--overlay", fake["bit"], "--batch", "50")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((deploy / "board_results.json").read_text())
    assert result["csim_bit_exact_fraction"] == 1.0 and result["accuracy"] == report["accuracy"]["csim"]
    # the stand-in board is the C simulation through the generated wrapper: deploy/'s expected outputs are its own
    assert np.array_equal(np.load(deploy / "board_outputs.npy"), np.load(deploy / "csim_outputs.npy"))
    # a runner that packed the stream differently would be caught: float64 words through the same wrapper
    meta["input_word"] = meta["output_word"] = word_spec("double")
    (deploy / "deploy.json").write_text(json.dumps(meta))
    wrong = run_on_board(deploy, env, tmp_path / "log", "--overlay", fake["bit"], "--limit", "20")
    assert wrong.returncode != 0 and "bit-exact 1.0000" not in wrong.stdout


@pytest.mark.slow
def test_runner_bit_exact_with_csim_on_1200_images(board, tmp_path):
    """1,200 digits images (test, validation and training splits), batches of 128 and a last one of 48."""
    ctx, project, env, root = board
    check_against_csim(ctx, project, env, root, 1200, 128, tmp_path)


def test_bitstream_skipped_cleanly_without_vivado(fire_stream_build, tmp_path, caplog):
    if not bitstream_tools():
        pytest.skip("vivado is installed: the skip path cannot be taken here")
    src, _ = fire_stream_build
    out = copy_build(src, tmp_path / "b")
    cfg = bitstream_config(out)
    names = step_names_for(cfg)
    assert names[-3:] == ["bitstream", "deploy", "report"]
    ctx = BuildContext(cfg=cfg, board=load_board(cfg.board), out=out)
    records = json.loads((out / "steps.json").read_text())["steps"]
    for name in ("train", "qat", "export", "convert", "csim"):
        ctx.results.set(name, RESULT_TYPES[name].from_dict(records[name]["metrics"]))
    run_steps(ctx, [STEP_LOOKUP["bitstream"], STEP_LOOKUP["deploy"]])
    assert ctx.results.bitstream.status == "skipped" and "vivado" in ctx.results.bitstream.message
    assert any("bitstream skipped" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert (out / "bitstream" / "SKIPPED.txt").is_file()
    meta = json.loads((out / "deploy" / "deploy.json").read_text())
    assert meta["overlay"] is None and (out / "deploy" / "run_on_board.py").is_file()
    # a board without a PYNQ overlay flow refuses --bitstream before anything runs
    with pytest.raises(UsageError, match="--bitstream"):
        step_names_for(config_from_dict({**cfg.to_dict(), "board": "zedboard"}))


def _tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_bitstream_with_standin_vivado_lands_in_deploy(fire_stream_build, tmp_path, monkeypatch):
    """Stand-in vivado_hls / vivado on PATH: the commands hls4ml's VivadoAccelerator build runs, and the
    .bit/.hwh found in Vivado's run and handoff folders are copied into deploy/ as fireflow.bit/.hwh."""
    src, _ = fire_stream_build
    out = copy_build(src, tmp_path / "b")
    tools = tmp_path / "tools"
    tools.mkdir()
    check = 'import sys\nassert sys.argv[1:3] == ["-f", "build_prj.tcl"] and "export=1" in sys.argv[3]\n'
    _tool(tools, "vivado_hls", check)
    _tool(
        tools,
        "vivado",
        """\
        import sys
        from pathlib import Path
        assert sys.argv[1:] == ["-mode", "batch", "-source", "design.tcl"] and Path("design.tcl").is_file()
        root = Path("myproject_vivado_accelerator")
        (root / "project_1.runs/impl_1").mkdir(parents=True)
        (root / "project_1.runs/impl_1/design_1_wrapper.bit").write_bytes(b"BIT")
        (root / "project_1.gen/sources_1/bd/design_1/hw_handoff").mkdir(parents=True)
        (root / "project_1.gen/sources_1/bd/design_1/hw_handoff/design_1.hwh").write_text("HWH")
        """,
    )
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    cfg = bitstream_config(out)
    ctx = BuildContext(cfg=cfg, board=load_board(cfg.board), out=out)
    records = json.loads((out / "steps.json").read_text())["steps"]
    for name in ("train", "qat", "export", "convert", "csim"):
        ctx.results.set(name, RESULT_TYPES[name].from_dict(records[name]["metrics"]))
    run_steps(ctx, [STEP_LOOKUP["bitstream"], STEP_LOOKUP["deploy"]])
    assert ctx.results.bitstream.status == "built" and ctx.results.bitstream.bit.endswith("design_1_wrapper.bit")
    assert (out / "deploy" / "fireflow.bit").read_bytes() == b"BIT"
    assert (out / "deploy" / "fireflow.hwh").read_text() == "HWH"
    assert json.loads((out / "deploy" / "deploy.json").read_text())["overlay"] == "fireflow.bit"


def test_word_types_of_the_wrapper():
    assert word_spec("float") == {"kind": "float32", "ctype": "float"}
    assert word_spec("ap_fixed<16,6>")["frac_bits"] == 10 and word_spec("ap_uint<8>")["signed"] is False
    with pytest.raises(ToolError, match="no numpy type"):
        word_spec("ap_fixed<12,4>")


def test_bitstream_option_sets_the_config_key():
    from flows import build

    assert build.overrides_from_args(build.parse_args(["lenet5_fire", "--bitstream"]))["hls.bitstream"] is True
    assert "hls.bitstream" not in build.overrides_from_args(build.parse_args(["lenet5_fire"]))
