"""``bench zoo``: pretrained weights (list, fetch) and the trainers that make them."""

from __future__ import annotations

from pathlib import Path

import click

from latent_edit_bench.cli.common import BenchGroup, writable_output
from latent_edit_bench.pipeline.session import resolve_device


@click.group(cls=BenchGroup)
def zoo():
    """Pretrained weights you fetch yourself (URLs, checksums, cache)."""


@zoo.command("list")
def zoo_list():
    """Show zoo entries and whether each is in the cache."""
    from latent_edit_bench import zoo as zoo_mod

    click.echo(f"cache: {zoo_mod.cache_dir()}")
    for e in zoo_mod.ZOO.values():
        state = "present" if e.path.exists() else "missing"
        click.echo(f"{e.name:<30} {state:<8} {e.format:<16} {e.filename}")
        click.echo(f"    url: {e.url}")
        click.echo(f"    licence: {e.licence}; sha256: {e.sha256 or 'not published'}")
        if e.notes:
            click.echo(f"    {e.notes}")


@zoo.command("fetch")
@click.argument("name")
def zoo_fetch(name):
    """Download a zoo entry into the cache and verify its checksum."""
    from latent_edit_bench import zoo as zoo_mod

    click.echo(f"saved {zoo_mod.fetch(name)}")


@zoo.command("train-regressor")
@click.option("--celeba", "celeba_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="CelebA-layout folder (img_align_celeba/, list_attr_celeba.txt)")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("celeba_r50.model"), show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--image-size", type=click.IntRange(min=32), default=128, show_default=True)
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="stop this call early; rerun resumes")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def zoo_train_regressor(celeba_dir, output, epochs, batch_size, lr, image_size, max_steps, seed, device):
    """Train the 40-attribute ResNet-50 regressor R on CelebA (resumes after a kill)."""
    from latent_edit_bench.trainers.regressor import train_regressor

    writable_output(output)
    result = train_regressor(celeba_dir, output, epochs=epochs, batch_size=batch_size, lr=lr,
                             image_size=image_size, device=str(resolve_device(device)), seed=seed,
                             max_steps=max_steps)
    state = "finished" if result.finished else "stopped early (rerun to resume)"
    click.echo(f"{state} at epoch {result.epoch}, step {result.step}: {result.out_path}")


@zoo.command("train-stylegan2")
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="run folder: checkpoint.pt, log.csv, samples_*.png, quality.csv, stylegan2.safetensors")
@click.option("--steps", type=click.IntRange(min=1), required=True, help="total steps (a rerun resumes up to this)")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--size", type=click.Choice(["16", "32", "64"]), default="64", show_default=True)
@click.option("--max-channels", type=click.IntRange(min=8), default=256, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.002, show_default=True)
@click.option("--r1-gamma", type=click.FloatRange(min=0), default=None, help="default: 0.0002 * size^2 / batch")
@click.option("--pl-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="path-length regularisation weight (0 = off)")
@click.option("--mixed-precision", type=click.Choice(["bf16", "fp16"]), default=None, help="CUDA only")
@click.option("--eval-every", type=click.IntRange(min=1), default=None,
              help="KID/FID against the DCGAN every N steps (needs faceapi-descriptor)")
@click.option("--snapshot-every", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--no-resume", is_flag=True, help="start over, discarding the folder's checkpoint and logs")
def zoo_train_stylegan2(output_dir, steps, batch_size, size, max_channels, lr, r1_gamma, pl_weight,
                        mixed_precision, eval_every, snapshot_every, seed, device, no_resume):
    """Distil a StyleGAN2 from the embedded DCGAN (a GPU job; resumes after a kill) and export it."""
    from latent_edit_bench.trainers.stylegan2 import export_stylegan2, train_stylegan2

    writable_output(output_dir / "checkpoint.pt")
    result = train_stylegan2(output_dir, steps=steps, batch_size=batch_size, size=int(size),
                             max_channels=max_channels, lr=lr, r1_gamma=r1_gamma, pl_weight=pl_weight,
                             mixed_precision=mixed_precision, eval_every=eval_every,
                             snapshot_every=snapshot_every, seed=seed, device=str(resolve_device(device)),
                             resume=not no_resume)
    out = export_stylegan2(result.checkpoint, output_dir / "stylegan2.safetensors")
    click.echo(f"step {result.step}: {result.checkpoint}; exported G_ema + D to {out}")
