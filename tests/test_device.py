"""`--device auto|cpu|cuda` (issue 14 item 4): resolution, one-line refusal without CUDA, data moved once,
the CPU path unchanged; `gpu`-marked tests (skipped without CUDA) train, evaluate and verify on a GPU."""

from __future__ import annotations

import pytest
import torch

from flows.api import run_build
from flows.build import main as build_main
from flows.data import load_data
from flows.device import resolve_device
from flows.errors import UsageError
from flows.train import TrainRecipe, evaluate, train

CUDA = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not CUDA, reason="no CUDA device")


def test_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    with pytest.raises(UsageError, match="choose auto, cpu or cuda"):
        resolve_device("tpu")


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = build_main(["lenet5", "--device", "cuda", "--dataset", "digits", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--device cuda" in err[0] and "--device cpu" in err[0]
    assert not (tmp_path / "b").exists()


def test_dataset_moves_once_and_stays_put_on_its_own_device():
    split = load_data("synthetic", val_fraction=0).test
    assert split.to("cpu") is split and split.to(None) is split
    if CUDA:
        assert split.to("cuda") is split.to("cuda")  # the copy is kept: moved once


def _tiny_training(device):
    data = load_data("synthetic", max_train=256, val_size=64)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(28 * 28, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )
    history = train(model, data.train, TrainRecipe(2, 0.01, 64, seed=3), val=data.val, device=device)
    return model, history, data


def test_cpu_device_is_the_default_path():
    """`device="cpu"` and no device at all give the same weights and history, bit for bit."""
    a, ha, _ = _tiny_training("cpu")
    b, hb, _ = _tiny_training(None)
    assert ha == hb and all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert all(h["val_acc"] is not None for h in ha)


@pytest.mark.gpu
@needs_gpu
def test_training_and_evaluation_on_the_gpu():
    model, history, data = _tiny_training("cuda")
    assert next(model.parameters()).device.type == "cuda"
    gpu = evaluate(model, data.test)
    model.to("cpu")
    cpu = evaluate(model, data.test)
    assert gpu["accuracy"] == pytest.approx(cpu["accuracy"], abs=0.02)
    assert history[-1]["val_acc"] is not None


@pytest.mark.gpu
@needs_gpu
def test_gpu_build_is_bit_exact_in_c_simulation(tmp_path):
    """Training on the GPU, export and the C-simulation comparison on the CPU in float64: still bit-exact."""
    overrides = {
        "data.dataset": "digits",
        "data.download": False,
        "train.device": "cuda",
        "train.epochs": 2,
        "train.qat_epochs": 1,
        "structure.enabled": False,
        "compress.enabled": False,
        "csim.samples": 60,
        "out_dir": str(tmp_path / "b"),
    }
    report = run_build("lenet5", "pynq-z2", overrides)
    assert report["csim"]["bit_exact_fraction"] == 1.0
