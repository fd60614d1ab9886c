"""One QAT epoch on the CPU and on the GPU, side by side: what `--device cuda` buys (issue 14 item 4).

For each model (default lenet5 and lenet5_fire, their default recipes' bit widths), the Brevitas
quantization-aware training loop of the flow (`flows.train.train`, the `qat` step's recipe: batch 128,
+-2 px shifts) runs one epoch of MNIST-sized data (60,000 28x28 images: real MNIST with --data-dir,
else generated class prototypes + noise, which cost the same) on the CPU (torch threads: --cpu-threads,
default 1 as the flow's `train.threads`; and all cores) and on CUDA, after a short warm-up each.
Writes bench/results/gpu.{json,md}. Without a CUDA device it prints why and exits 0 (nothing written).

    python bench/gpu.py                                   # lenet5, lenet5_fire; 60,000 images
    python bench/gpu.py --images 12000 --models lenet5    # a shorter run (seconds scale with images)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch
from _common import SHARED_DATA, table, write_results

WARMUP_BATCHES = 10


def make_data(args):
    from flows.data import load_data, make_synthetic

    if args.data_dir:
        return load_data("mnist", args.data_dir, download=False, max_train=args.images, val_fraction=0).train
    train, _ = make_synthetic(int(args.images / 0.8) + 1, (1, 28, 28), 10, seed=0)
    return train.head(args.images)


def qat_model(name: str):
    from flows.api import resolve_config
    from models import build_model
    from models.quant import QuantSpec

    cfg = resolve_config(name, "pynq-z2")
    q = cfg.quant
    spec = QuantSpec(q.weight_bits, q.conv_weight_bits, q.fc_weight_bits, q.act_bits, q.input_bits, True)
    torch.manual_seed(0)
    return build_model(name, spec, (1, 28, 28), 10, cfg.arch), cfg


def epoch_seconds(name: str, data, device: str, threads: int, batch_size: int) -> float:
    """Seconds of one QAT epoch over `data` on `device` (after calibration and a warm-up, not counted)."""
    from flows.train import TrainRecipe, train

    torch.set_num_threads(threads)
    model, cfg = qat_model(name)
    with torch.no_grad():  # the qat step's calibration: activation statistics from a few real batches
        model.train()
        for i in range(8):
            model(data.float_images(slice(i * 128, (i + 1) * 128)))
    recipe = TrainRecipe(1, cfg.train.qat_lr, batch_size, cfg.train.weight_decay, True, 1, f"{name} {device}")
    train(model, data.head(WARMUP_BATCHES * batch_size), recipe, device=device)  # CUDA init, allocator, kernels
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    train(model, data, recipe, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["lenet5", "lenet5_fire"])
    p.add_argument("--images", type=int, default=60000, help="images per epoch (default 60,000: one MNIST epoch)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--cpu-threads", type=int, default=1, help="torch threads of the CPU run (the flow's default: 1)")
    p.add_argument("--no-all-cores", action="store_true", help="skip the CPU run on all cores")
    p.add_argument(
        "--data-dir",
        default=str(SHARED_DATA) if (SHARED_DATA / "MNIST").exists() else None,
        help="MNIST in torchvision's layout (default ../shared/data when present; else generated data)",
    )
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"bench/gpu.py skipped: no CUDA device here (torch {torch.__version__}); run it on a GPU machine")
        return 0
    from flows.logs import quiet_libraries

    quiet_libraries()
    data = make_data(args)
    gpu_name = torch.cuda.get_device_name(0)
    cores = os.cpu_count() or 1
    rows, results = [], []
    for name in args.models:
        entry = {"model": name, "images": len(data), "batch_size": args.batch_size}
        entry["gpu_seconds"] = epoch_seconds(name, data, "cuda", args.cpu_threads, args.batch_size)
        entry["cpu_threads"] = args.cpu_threads
        entry["cpu_seconds"] = epoch_seconds(name, data, "cpu", args.cpu_threads, args.batch_size)
        entry["speedup"] = entry["cpu_seconds"] / entry["gpu_seconds"]
        if not args.no_all_cores and cores > args.cpu_threads:
            entry["cpu_all_cores_seconds"] = epoch_seconds(name, data, "cpu", cores, args.batch_size)
            entry["speedup_vs_all_cores"] = entry["cpu_all_cores_seconds"] / entry["gpu_seconds"]
        print(
            f"{name}: one QAT epoch of {len(data):,} images: CPU ({args.cpu_threads} thread(s)) "
            f"{entry['cpu_seconds']:.1f} s, GPU {entry['gpu_seconds']:.1f} s: {entry['speedup']:.1f}x"
            + (
                f"; CPU on {cores} cores {entry['cpu_all_cores_seconds']:.1f} s"
                if "cpu_all_cores_seconds" in entry
                else ""
            )
        )
        results.append(entry)
        rows.append(
            [
                name,
                f"{len(data):,}",
                f"{entry['cpu_seconds']:.1f} s ({args.cpu_threads} thr)",
                f"{entry.get('cpu_all_cores_seconds', float('nan')):.1f} s ({cores} cores)",
                f"{entry['gpu_seconds']:.1f} s",
                f"**{entry['speedup']:.1f}x**",
            ]
        )
    machine = {
        "gpu": gpu_name,
        "cpu_cores": cores,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "data": "MNIST" if args.data_dir else "generated 28x28x1, 10 classes",
    }
    md = "\n".join(
        [
            "# One QAT epoch, CPU vs GPU (`python bench/gpu.py`)",
            "",
            f"{gpu_name}; {cores} CPU cores; torch {torch.__version__}; data: {machine['data']}; batch "
            f"{args.batch_size}; the flow's QAT loop (flows.train.train) after calibration and a "
            f"{WARMUP_BATCHES}-batch warm-up.",
            "",
            table(["model", "images", "CPU", "CPU all cores", "GPU", "GPU speedup"], rows),
        ]
    )
    js, mdp = write_results("gpu", {"machine": machine, "results": results}, md)
    print(f"wrote {js} and {mdp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
