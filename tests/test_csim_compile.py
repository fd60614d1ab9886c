"""flows/csim.py compile_project / load_library: g++ run by the flow itself, failures loud, no stale library.

Tiny hand-written projects (a top function and hls4ml's bridge entry point) keep these tests fast.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import flows.csim as csim
from flows.csim import LIBRARY_RECORD, compile_project, load_library
from flows.errors import ToolError

TOP = "void myproject(const double *x, double *y) { y[0] = 2 * x[0] + 1; }\n"
BRIDGE = (
    "void myproject(const double *x, double *y);\n"
    'extern "C" void myproject_double(double *x, double *y) { myproject(x, y); }\n'
)


def _project(root: Path, top: str = TOP) -> Path:
    (root / "firmware" / "weights").mkdir(parents=True)
    (root / "firmware" / "myproject.cpp").write_text(top)
    (root / "myproject_bridge.cpp").write_text(BRIDGE)
    return root


def test_compile_then_load_runs_the_library(tmp_path):
    project = _project(tmp_path / "prj")
    stale = project / "firmware" / "myproject-0ld5tamp.so"
    stale.write_bytes(b"not a library")
    lib = compile_project(project, "myproject")
    assert lib.is_file() and not stale.exists()  # an old library is never left to be loaded
    assert not list(project.glob("*.o"))  # objects went to a temporary folder
    record = json.loads((project / LIBRARY_RECORD).read_text())
    assert record["library"] == lib.name and record["weights_dir"] == str(project.resolve() / "firmware" / "weights")
    out = load_library(project, "myproject", 1, 1).run(np.array([[1.5], [-2.0]]))
    np.testing.assert_array_equal(out, [[4.0], [-3.0]])


def test_a_compile_error_is_a_tool_error_naming_the_first_error(tmp_path):
    project = _project(tmp_path / "prj")
    compile_project(project, "myproject")
    (project / "firmware" / "myproject.cpp").write_text("void myproject(const double *x, double *y) { y[0] = z; }\n")
    with pytest.raises(ToolError, match=r"could not compile .*error: 'z' was not declared") as err:
        compile_project(project, "myproject")
    assert err.value.exit_code == 4
    assert not list((project / "firmware").glob("*.so"))  # the previous library is gone, not silently reused
    assert not list((project / "firmware").glob(".*.partial"))
    with pytest.raises(ToolError, match="no compiled C simulation"):
        load_library(project, "myproject", 1, 1)


def test_a_library_is_not_loaded_for_another_folder_or_changed_sources(tmp_path):
    project = _project(tmp_path / "prj")
    compile_project(project, "myproject")
    moved = tmp_path / "moved"
    project.rename(moved)
    with pytest.raises(ToolError, match="was compiled for .*prj"):
        load_library(moved, "myproject", 1, 1)
    moved.rename(project)
    (project / "firmware" / "myproject.cpp").write_text(TOP.replace("+ 1", "+ 2"))
    with pytest.raises(ToolError, match="changed after the C simulation was compiled"):
        load_library(project, "myproject", 1, 1)


def test_missing_sources_say_to_run_convert(tmp_path):
    with pytest.raises(ToolError, match="run the convert step"):
        compile_project(tmp_path, "myproject")


def test_an_interrupt_stops_the_compiler_and_its_children(tmp_path, monkeypatch):
    """Ctrl-C during g++ must not leave the compiler (or cc1plus, its child) running."""
    project = _project(tmp_path / "prj")
    pidfile = tmp_path / "child.pid"
    fake = tmp_path / "fake-g++"
    fake.write_text(f'#!/bin/bash\ncase "$*" in *-fsyntax-only*) exit 0;; esac\nsleep 60 & echo $! > {pidfile}\nwait\n')
    fake.chmod(0o755)
    monkeypatch.setattr(csim, "CXX", str(fake))

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(KeyboardInterrupt):
            compile_project(project, "myproject")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    child = int(pidfile.read_text())
    deadline = time.time() + 5
    while time.time() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())  # a zombie has stopped


def test_cast_of_a_constant_below_the_rounding_bit_runs(tmp_path):
    """A DA output that is only a tiny bias (its filter pruned away) is cast like this in the generated
    kernel; ap_types' C model asserts on it unless the C simulation's flags turn its asserts off, and the
    value must still come out as the hardware's (rounded to 0, saturated at 0 for the unsigned type)."""
    import subprocess

    import hls4ml

    ap_types = Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"
    src = tmp_path / "cast.cpp"
    src.write_text(
        '#include "ap_fixed.h"\n#include <cstdio>\n'
        "int main() { ap_fixed<4,-6> v = -0.0068359375; ap_fixed<6,-3> w = 0.0546875;\n"
        "  ap_ufixed<8,3,AP_RND_CONV,AP_SAT> o = v; ap_fixed<8,3,AP_RND_CONV,AP_SAT> p = w;\n"
        '  printf("%g %g\\n", o.to_double(), p.to_double()); return 0; }\n'
    )
    exe = tmp_path / "cast"
    flags = [f for f in csim.compile_flags(axi_wrapper=True) if f != "-fPIC"]
    subprocess.run([csim.CXX, *flags, f"-I{ap_types}", str(src), "-o", str(exe)], check=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0", "0.0625"]  # 0.0546875 = 1.75 LSB of 2^-5 -> 2 LSB
