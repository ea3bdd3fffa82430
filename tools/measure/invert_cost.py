"""Inversion cost per photo: seconds of ``bench invert``'s projection per photo, per backbone and batch.

Times ``latent_edit_bench.invert.project`` (initialisation + ``--steps`` optimisation steps + final render) on
targets rendered by the backbone itself, and prints seconds per photo for the full schedule:

    OMP_NUM_THREADS=2 .venv/bin/python tools/measure/invert_cost.py --backbones dcgan --steps 20 --batch 1,8
    .venv/bin/python tools/measure/invert_cost.py --device cuda --backbones dcgan,stylegan2-256 --steps 50 --batch 1,8

stylegan2-256 is a random-weight StyleGAN2 of the paper's size (bench/latent_edit_bench/perf/backbones.py::random_stylegan2): the
cost does not depend on the weights. The DCGAN's default 3 starts make its batch 3x the photos. The per-photo time of a full ``--steps 300`` run is extrapolated
linearly from the measured steps (initialisation counted once) and says so.
"""

from __future__ import annotations

import argparse
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--backbones", default="dcgan")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--full-steps", type=int, default=300)
    p.add_argument("--batch", default="1,8")
    args = p.parse_args()
    from latent_edit_bench.invert import InvertConfig, project
    from latent_edit_bench.perf import make_backbone
    from latent_edit_bench.plugins import get_plugins
    from latent_edit_bench.pipeline.session import Session

    s = Session(get_plugins(), device=args.device)
    vgg = s.instrument("vgg16-stlpips")
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}")
    print("backbone | batch | init s | s/step | s/photo at --steps " + str(args.full_steps))
    for name in args.backbones.split(","):
        bb = make_backbone(name, get_plugins()).to(dev).eval()
        for b in (int(v) for v in args.batch.split(",")):
            with torch.no_grad():
                x = bb.sample(b, 5, batch_size=b).to(dev)
            project(bb, vgg, x, InvertConfig(steps=1))     # warm-up: first-call allocations and thread start
            times = {}
            for steps in (1, args.steps + 1):         # the difference removes the initialisation
                sync()
                t = time.perf_counter()
                project(bb, vgg, x, InvertConfig(steps=steps))
                sync()
                times[steps] = time.perf_counter() - t
            per_step = (times[args.steps + 1] - times[1]) / args.steps
            init = times[1] - per_step
            print(f"{name} | {b} | {init:.2f} | {per_step:.3f} | {(init + args.full_steps * per_step) / b:.2f}")


if __name__ == "__main__":
    main()
