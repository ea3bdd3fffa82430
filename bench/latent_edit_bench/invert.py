"""``bench invert``: real face photos -> aligned crops -> latents in the backbone's edit space.

Three steps, each replaceable on its own:

1. **Alignment** (:func:`align_faces`, the seam where a face detector plugs in): one photo in, a list
   of aligned crops out. Crops are aligned the way the backbone's own samples are: a similarity
   transform (scale, rotation, shift) that puts the photo's 68 face-api landmarks onto the mean
   landmarks of the backbone's renders (:func:`alignment_template`). That is FFHQ's recipe (eyes and
   mouth to fixed places) with the template measured instead of hard-coded, so it holds for the
   embedded DCGAN (DigiFace-1M crops, face filling the frame) as for a user's FFHQ StyleGAN2.
   A photo that is already an aligned crop is used as it is; otherwise BlazeFace finds every face
   (or ``--box`` says where one is), and each crop is aligned from the landmarks inside its box and
   checked against the template (refused, exit 2, if it does not fit).
2. **Projection** (:func:`project`): optimisation of the edit-space latent (z for the DCGAN, W+ for
   StyleGAN2) against a perceptual term (LPIPS-style distance on the embedded ST-LPIPS VGG16 trunk)
   plus a pixel term, with the StyleGAN2 projector's schedule (lr ramp-up/ramp-down, decaying latent
   noise) and, for StyleGAN2 with ``noise="optimise"``, per-photo noise maps with its noise regulariser.
3. **Quality** (:func:`quality`): photo vs reconstruction, with instruments other than the loss's:
   landmark error in inter-ocular distances, identity cosine, emotion agreement.

The output folder (docs/augment.md): ``aligned/<name>.png``, ``recon/<name>.png``,
``latents/<name>.safetensors`` (the latent plus its quality numbers in the metadata) and
``quality.csv`` (rebuilt from the latents files every time). A photo whose latents file exists is
skipped: a killed run resumes, and nothing finished is lost.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from latent_edit_bench.faces import inter_ocular_68
from latent_edit_bench.errors import BenchError

# landmark points used to fit the similarity transform: brows, nose, eyes, mouth (27 jaw points vary with
# pose and hair far more than the inner face, and pull a crop towards the chin)
INNER = list(range(17, 68))


class NotAligned(BenchError):
    """A photo could not be turned into an aligned crop (no detector yet, face not where expected)."""


# -- 1. alignment ---------------------------------------------------------------------------------------

@dataclass
class Template:
    """Where the backbone puts a face: mean landmarks [68, 2] in fractions of the output side, and the
    spread of its own samples around them (the tolerance for an already-aligned crop)."""

    landmarks: np.ndarray
    resolution: int
    max_scale: float      # |log scale| of a similarity fit, worst of the backbone's samples
    max_angle: float      # degrees
    max_shift: float      # fraction of the side


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama 1991) mapping points src -> dst: 2x3 matrix [sR | t]."""
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    D = np.diag([1.0, d])
    rot = u @ D @ vt
    scale = (sig * np.diag(D)).sum() / (s0 ** 2).sum(1).mean()
    A = scale * rot
    return np.concatenate([A, (md - A @ ms)[:, None]], 1)


def _params(M: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(|log scale|, |angle| in degrees, translation) of a similarity matrix."""
    scale = math.sqrt(abs(np.linalg.det(M[:, :2])))
    angle = math.degrees(math.atan2(M[1, 0], M[0, 0]))
    return abs(math.log(scale)), abs(angle), M[:, 2]


@torch.no_grad()
def alignment_template(backbone, landmarks_inst, n: int = 64, seed: int = 0, batch_size: int = 32) -> Template:
    """Measure the backbone's alignment: mean landmarks of ``n`` renders and how far its own samples stray."""
    images = backbone.sample(n, seed, batch_size=batch_size)
    lm = landmarks_inst.measure(images, batch_size)["landmarks"].double().numpy()    # fractions (square)
    mean = np.median(lm, 0)          # a few renders break up and get wild landmarks: the median ignores them
    params = np.array([_params(similarity(one[INNER], mean[INNER]))[:2] for one in lm])
    shifts = np.abs(lm[:, INNER].mean(1) - mean[INNER].mean(0)).max(1)
    # tolerances: 1.5x the 90th percentile of the backbone's own samples (the worst are broken renders),
    # floored so a 64-sample estimate never rejects an ordinary crop (10 % in size, 5 degrees, 3 % of the side)
    q = np.quantile(np.column_stack([params, shifts]), 0.9, axis=0)
    return Template(mean, backbone.resolution, max(1.5 * q[0], math.log(1.1)), max(1.5 * q[1], 5.0),
                    max(1.5 * q[2], 0.03))


def _landmarks_px(landmarks_inst, rgb: np.ndarray) -> np.ndarray:
    from latent_edit_bench.instruments.faceapi import landmarks_to_pixels
    from latent_edit_bench.images import to_tensor

    h, w = rgb.shape[:2]
    lm = landmarks_inst.measure(to_tensor(rgb))["landmarks"][0].double()
    return landmarks_to_pixels(lm, h, w).numpy()


def check_aligned(landmarks_frac: np.ndarray, template: Template) -> str | None:
    """None if landmarks (fractions of a square crop's side) fit the template; else the reason."""
    M = similarity(landmarks_frac[INNER], template.landmarks[INNER])
    ls, ang, _ = _params(M)
    shift = np.abs(template.landmarks[INNER].mean(0) - landmarks_frac[INNER].mean(0)).max()
    why = []
    if ls > template.max_scale:
        size = 1 / math.sqrt(abs(np.linalg.det(M[:, :2])))     # M maps the photo onto the template
        why.append(f"face {size:.2f}x the expected size")
    if ang > template.max_angle:
        why.append(f"rotated {ang:.0f} degrees")
    if shift > template.max_shift:
        why.append(f"face centre {100 * shift:.0f}% of the side off")
    return "; ".join(why) or None


def warp(rgb: np.ndarray, M: np.ndarray, size: int, supersample: int = 4) -> np.ndarray:
    """Apply the 2x3 similarity M (photo px -> crop px of side ``size``): render at supersample x size
    with bicubic sampling, then reduce with a box filter (a 300-px face shrunk to 64 px must not alias)."""
    big = size * supersample
    S = np.diag([supersample, supersample])
    A, t = S @ M[:, :2], S @ M[:, 2]
    inv = np.linalg.inv(A)
    coeffs = np.concatenate([inv, (-inv @ t)[:, None]], 1).reshape(-1)
    # pixel centres: PIL maps output pixel (x + .5) to input (a(x + .5) + ...): same convention both ways
    img = Image.fromarray(rgb).transform((big, big), Image.AFFINE, tuple(coeffs), resample=Image.BICUBIC,
                                         fillcolor=(0, 0, 0))
    return np.asarray(img.reduce(supersample))


def detected_boxes(rgb: np.ndarray, detector, min_score: float = 0.5, loose: float = 1.3) -> list[tuple]:
    """Square boxes (x, y, size) around every face BlazeFace finds, ``loose`` x its box's longer side
    (face-api's landmark net wants the whole face in view; the crop is then aligned from landmarks)."""
    image = torch.as_tensor(np.array(rgb, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1   # a copy: rgb may be read-only
    boxes = []
    for det in detector.detect(image, min_score=min_score):
        x0, y0, x1, y1 = det.box
        side = loose * max(x1 - x0, y1 - y0)
        boxes.append(((x0 + x1 - side) / 2, (y0 + y1 - side) / 2, side))
    return sorted(boxes)   # left to right, as bench measure numbers faces


def align_faces(rgb: np.ndarray, template: Template, landmarks_inst, boxes=None, name: str = "photo",
                detector=None) -> list[np.ndarray]:
    """The seam: one photo (H x W x 3 uint8) -> aligned crops (size x size x 3 uint8), one per face.

    ``boxes``: [(x, y, size), ...] face boxes in photo pixels (the user's ``--box``). Without boxes, a
    photo that is already an aligned crop of one face is used as it is; otherwise ``detector``
    (BlazeFace) finds every face. No face, or none that aligns: :class:`NotAligned` (exit 2), never a
    misaligned projection.
    """
    size = template.resolution
    if not boxes:
        h, w = rgb.shape[:2]
        why = "not a square face crop"
        if abs(h - w) <= 0.02 * max(h, w):
            crop = np.asarray(Image.fromarray(rgb).resize((size, size), Image.LANCZOS)) if (h, w) != (size, size) else rgb
            why = check_aligned(_landmarks_px(landmarks_inst, crop) / size, template)
            if not why:
                return [crop]
        if detector is None:
            raise NotAligned(f"{name}: no face aligned as the backbone expects ({why}); pass --box X,Y,SIZE "
                             f"(the face's square in photo pixels) to align it from its landmarks")
        boxes = detected_boxes(rgb, detector)
        if not boxes:
            raise NotAligned(f"{name}: no face found (BlazeFace) and the photo is {why}; "
                             f"pass --box X,Y,SIZE if there is a face the detector missed")
    crops = []
    for x, y, s in boxes:
        # landmarks inside the box (face-api's landmark net is trained on detector boxes), then align the
        # whole photo onto the template from them, so the crop may extend past the box
        side = 2 * size                              # the box at 2x the crop's side, for the landmark net
        first = warp(rgb, np.array([[side / s, 0, -x * side / s], [0, side / s, -y * side / s]]), side)
        lm = _landmarks_px(landmarks_inst, first) * s / side + np.array([x, y])   # back to photo px
        M = similarity(lm[INNER], template.landmarks[INNER] * size)
        crop = warp(rgb, M, size)
        # refine once: the landmarks of the aligned crop are more accurate than the box's
        lm2 = _landmarks_px(landmarks_inst, crop)
        M = similarity(lm2[INNER], template.landmarks[INNER] * size) @ np.vstack([M, [0, 0, 1]])
        crop = warp(rgb, M, size)
        why = check_aligned(_landmarks_px(landmarks_inst, crop) / size, template)
        if why:
            raise NotAligned(f"{name}: no face could be aligned inside box {x},{y},{s} ({why}); check the box")
        crops.append(crop)
    return crops


# -- 2. projection ---------------------------------------------------------------------------------------

@dataclass
class InvertConfig:
    steps: int = 300
    lr: float | None = None            # None: 0.1 for W+ (StyleGAN2 projector), 0.03 for z (0.1 overshoots there)
    lr_rampup: float = 0.05            # fraction of steps
    lr_rampdown: float = 0.25
    pixel_weight: float = 1.0          # MSE on [-1, 1] pixels, next to the perceptual distance
    init_samples: int = 1024           # DCGAN: start from the nearest of this many seeded z; StyleGAN2: w_avg from 10k
    starts: int = 3                    # DCGAN: optimise from the ``starts`` nearest candidates, keep the best
    latent_noise: float = 0.05         # StyleGAN2 projector: initial latent noise (x w_std), ramped down
    noise_ramp: float = 0.75
    noise: str = "const"               # StyleGAN2: "const" (the backbone's maps, as every edit renders) or "optimise"
    noise_weight: float = 1e5          # StyleGAN2 projector's noise regularisation weight
    prior_weight: float = 0.1          # DCGAN: keep |z| / sqrt(d) near 1, where N(0, I) puts its mass
    seed: int = 0

    def check(self):
        if self.steps < 1:
            raise BenchError(f"--steps must be at least 1, got {self.steps}")
        if self.starts < 1:
            raise BenchError(f"--starts must be at least 1, got {self.starts}")
        if self.noise not in ("const", "optimise"):
            raise BenchError(f"--noise must be const or optimise, got {self.noise!r}")


def perceptual_distance(vgg, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS-style distance per image [B]: channel-unit-normalised conv_1..conv_4 maps of the ST-LPIPS
    VGG16 trunk, mean squared difference per layer, summed (uniform layer weights: the trunk ships
    without LPIPS's learnt linear heads, so the values are not LPIPS numbers)."""
    return _distance(_unit_features(vgg, x), _unit_features(vgg, y))


def _unit_features(vgg, x: torch.Tensor) -> list[torch.Tensor]:
    return [f / (f.norm(dim=1, keepdim=True) + 1e-10) for f in vgg(x).values()]


def _distance(fa: list, fb: list) -> torch.Tensor:
    """perceptual_distance from unit feature maps: the projection computes the targets' maps once."""
    d = 0
    for a, b in zip(fa, fb):
        d = d + (a - b).pow(2).sum(1).mean((1, 2))
    return d


def _pairwise(fa: list, fb: list) -> torch.Tensor:
    """perceptual_distance between every a and every b: [A, B] (|u - v|^2 = 2 - 2 u.v for unit vectors)."""
    d = 0
    for a, b in zip(fa, fb):
        na, nb = a.pow(2).sum(1).mean((1, 2)), b.pow(2).sum(1).mean((1, 2))
        d = d + na[:, None] + nb[None, :] - 2 * torch.einsum("nchw,mchw->nm", a, b) / (a.shape[2] * a.shape[3])
    return d


def _lr_at(t: float, cfg: InvertConfig, lr: float) -> float:
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / cfg.lr_rampup)


def _noise_reg(noises: list[torch.Tensor]) -> torch.Tensor:
    """StyleGAN2 projector's regulariser: squared autocorrelation at shifts 1 over a pyramid, per image."""
    loss = 0
    for n in noises:
        while True:
            loss = loss + (n * torch.roll(n, 1, 3)).mean((1, 2, 3)) ** 2 + (n * torch.roll(n, 1, 2)).mean((1, 2, 3)) ** 2
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return loss


@dataclass
class Projection:
    latents: torch.Tensor        # [B, L, D] edit-space latents (CPU)
    recon: torch.Tensor          # [B, 3, R, R] reconstructions in [-1, 1] (CPU)
    loss: torch.Tensor           # [B] final perceptual + pixel loss
    noises: list | None = None   # StyleGAN2 with noise="optimise": per-photo noise maps


def project(backbone, vgg, targets: torch.Tensor, cfg: InvertConfig, progress: bool = False) -> Projection:
    """Optimise one edit-space latent per target image [B, 3, R, R] in [-1, 1] (all at once, on the
    backbone's device). Each photo's loss is its own: the batch only shares the forward passes."""
    from tqdm.auto import tqdm

    cfg.check()
    dev = backbone.device
    stylegan = backbone.edit_space == "w+"
    starts = 1 if stylegan else cfg.starts
    n_photos = targets.shape[0]
    targets = targets.to(dev).repeat_interleave(starts, 0)       # [photo0 start0, photo0 start1, ...]
    b = targets.shape[0]
    lr = cfg.lr if cfg.lr is not None else (0.1 if stylegan else 0.03)
    g = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        if stylegan:
            z = torch.randn(10_000, backbone.z_dim, generator=g).to(dev)
            w = torch.cat([backbone.generator.mapping(c) for c in z.split(1000)])
            w_avg, w_std = w.mean(0), float((w - w.mean(0)).pow(2).sum(1).mean().sqrt())
            lat = w_avg[None, None].repeat(b, backbone.n_layers, 1)
        else:
            # z space is not convex around a face: start each photo from the nearest of many samples
            z = torch.randn(cfg.init_samples, backbone.z_dim, generator=g).to(dev)
            cands = backbone.to_edit(z)
            ft = _unit_features(vgg, targets[::starts])
            dist = torch.cat([_pairwise(_unit_features(vgg, backbone.synthesize(c)), ft) for c in cands.split(32)])
            lat = cands[dist.topk(starts, dim=0, largest=False).indices.T.reshape(-1)].clone()   # [b, 1, D]
            w_std = 1.0
    lat = lat.clone().requires_grad_(True)
    params = [lat]
    noises = None
    if stylegan and cfg.noise == "optimise":
        noises = [torch.randn(b, 1, n.shape[2], n.shape[3], generator=g).to(dev).requires_grad_(True)
                  for n in backbone.generator.constant_noise()]
        params += noises
    opt = torch.optim.Adam(params, betas=(0.9, 0.999), lr=lr)

    with torch.no_grad():
        target_features = _unit_features(vgg, targets)   # fixed: not recomputed at every step

    def render(latents):
        if noises is not None:
            return backbone.generator.synthesis(latents, noise=noises)
        return backbone.synthesize(latents)

    for step in tqdm(range(cfg.steps), desc="invert", disable=not progress, leave=False):
        t = step / cfg.steps
        for group in opt.param_groups:
            group["lr"] = _lr_at(t, cfg, lr)
        x_in = lat
        if stylegan:
            strength = w_std * cfg.latent_noise * max(0.0, 1 - t / cfg.noise_ramp) ** 2
            x_in = lat + torch.randn(lat.shape, generator=g).to(dev) * strength
        x = render(x_in)
        per = _distance(_unit_features(vgg, x), target_features) + cfg.pixel_weight * (x - targets).pow(2).mean((1, 2, 3))
        loss = per.sum()
        if noises is not None:
            loss = loss + cfg.noise_weight * _noise_reg(noises).sum()
        if not stylegan:
            r = lat.norm(dim=-1).mean(1) / math.sqrt(backbone.z_dim)
            loss = loss + cfg.prior_weight * ((r - 1) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if noises is not None:
            with torch.no_grad():
                for n in noises:
                    n -= n.mean((1, 2, 3), keepdim=True)
                    n /= n.pow(2).mean((1, 2, 3), keepdim=True).sqrt()
    with torch.no_grad():
        x = render(lat)
        per = _distance(_unit_features(vgg, x), target_features) + cfg.pixel_weight * (x - targets).pow(2).mean((1, 2, 3))
    if starts > 1:                                                   # the best start of each photo
        best = per.view(n_photos, starts).argmin(1) + torch.arange(n_photos, device=dev) * starts
        lat, x, per = lat[best], x[best], per[best]
    return Projection(lat.detach().cpu(), x.float().cpu(), per.float().cpu(),
                      None if noises is None else [n.detach().cpu() for n in noises])


# -- 3. quality ------------------------------------------------------------------------------------------

@torch.no_grad()
def quality(session, roles: dict, vgg, photos: torch.Tensor, recon: torch.Tensor) -> dict[str, torch.Tensor]:
    """Photo vs reconstruction, per image: perceptual distance, landmark error (inter-ocular distances,
    mean over 68 points), identity cosine (face-api descriptor), emotion agreement (1 - total variation
    distance of the two emotion distributions) and whether the top emotion is the same."""
    dev = session.device
    photos, recon = photos.to(dev), recon.to(dev)
    out = {"perceptual": perceptual_distance(vgg, photos, recon), "pixel_mse": (photos - recon).pow(2).mean((1, 2, 3))}
    a = {r: session.instrument(n)(photos)[r].float() for r, n in roles.items()}
    b = {r: session.instrument(n)(recon)[r].float() for r, n in roles.items()}
    lo, le = a["landmarks"], b["landmarks"]
    iod = inter_ocular_68(lo)
    out["landmark_error_iod"] = (lo - le).norm(dim=-1).mean(1) / iod
    out["identity_cos"] = F.cosine_similarity(a["descriptor"], b["descriptor"], dim=1)
    out["emotion_agreement"] = 1 - 0.5 * (a["emotion"] - b["emotion"]).abs().sum(1)
    out["same_top_emotion"] = (a["emotion"].argmax(1) == b["emotion"].argmax(1)).float()
    return {k: v.float().cpu() for k, v in out.items()}


# -- the command -----------------------------------------------------------------------------------------

INVERT_ROLES = {"landmarks": "faceapi-landmarks", "descriptor": "faceapi-descriptor", "emotion": "auto"}
EMOTION_BACKENDS = ("deepface-emotion", "fer-emotion")


def emotion_instrument(session, name: str = "auto") -> str:
    """The emotion instrument's name: ``name``, or for "auto" the first of DeepFace / fer that loads."""
    if name != "auto":
        session.instrument(name)
        return name
    errors = []
    for n in EMOTION_BACKENDS:
        try:
            session.instrument(n)
            return n
        except BenchError as e:
            errors.append(f"{n}: {str(e)[:80]}")
    raise BenchError("no emotion instrument could be loaded: " + "; ".join(errors))


def _stem_names(paths: list[Path]) -> list[str]:
    """Output names per photo: the file stem, made unique with the parent folder when stems collide."""
    stems = [p.stem for p in paths]
    return [f"{p.parent.name}_{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]


def invert_photos(paths, out: Path, session, backbone, cfg: InvertConfig, box=None, emotion: str = "auto",
                  log=print) -> Path:
    """Align, project and score every photo; resumable per photo. Returns the quality table's path."""
    from safetensors.torch import save_file

    from latent_edit_bench.fs import atomic, writable_dir
    from latent_edit_bench.images import to_uint8
    from latent_edit_bench.images import load_images, to_tensor

    cfg.check()
    paths = [Path(p) for p in paths]
    if box is not None and len(paths) != 1:
        raise BenchError(f"--box locates the face in one photo; {len(paths)} photos were given")
    writable_dir(out)
    photos = load_images(paths)                          # unreadable / missing: exit 2 before any work
    names = _stem_names(paths)
    roles = dict(INVERT_ROLES, emotion=emotion_instrument(session, emotion))
    lm_inst = session.instrument("faceapi-landmarks")
    detector = session.instrument("mediapipe-blazeface")
    template = alignment_template(backbone, lm_inst, batch_size=session.batch_size)
    # align everything first: a photo that cannot be aligned stops the command before the long part
    todo, done = [], 0
    for (path, rgb), name in zip(photos, names):
        if (out / "latents" / f"{name}.safetensors").exists():
            done += 1
            continue
        crops = align_faces(rgb, template, lm_inst, boxes=[box] if box else None, name=str(path), detector=detector)
        for k, crop in enumerate(crops):
            todo.append((path, f"{name}" if len(crops) == 1 else f"{name}_{k}", crop))
    if done:
        log(f"invert: {done} photo(s) already inverted in {out}, skipped")
    vgg = session.instrument("vgg16-stlpips")
    for i in range(0, len(todo), session.batch_size):
        chunk = todo[i:i + session.batch_size]
        target = torch.cat([to_tensor(c) for _, _, c in chunk])
        log(f"invert: projecting {len(chunk)} photo(s) into {backbone.name}'s {backbone.edit_space} "
            f"({cfg.steps} steps)")
        proj = project(backbone, vgg, target, cfg, progress=session.progress)
        q = quality(session, roles, vgg, target, proj.recon)
        recon = to_uint8(proj.recon)
        for j, (path, name, crop) in enumerate(chunk):
            Image.fromarray(crop).save(_mk(out / "aligned" / f"{name}.png"))
            Image.fromarray(recon[j]).save(_mk(out / "recon" / f"{name}.png"))
            tensors = {"latent": proj.latents[j:j + 1].contiguous()}
            if proj.noises is not None:
                tensors.update({f"noise_{k}": n[j:j + 1].contiguous() for k, n in enumerate(proj.noises)})
            meta = {"source": str(path), "name": name, "backbone": backbone.name, "edit_space": backbone.edit_space,
                    "config": json.dumps(asdict(cfg)), "instruments": json.dumps(roles), "loss": f"{float(proj.loss[j]):.6g}",
                    **{k: f"{float(v[j]):.6g}" for k, v in q.items()}}
            with atomic(out / "latents" / f"{name}.safetensors") as tmp:   # written last: marks the photo done
                save_file(tensors, str(tmp), metadata=meta)
    return write_quality_table(out)


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


QUALITY_COLUMNS = ("perceptual", "pixel_mse", "landmark_error_iod", "identity_cos", "emotion_agreement",
                   "same_top_emotion", "loss")


def read_inverted(folder: Path) -> list[dict]:
    """Every inverted photo of a ``bench invert`` folder: metadata plus the latent [1, L, D], sorted by name."""
    from safetensors import safe_open

    folder = Path(folder)
    files = sorted((folder / "latents").glob("*.safetensors"))
    if not files:
        raise BenchError(f"{folder} holds no inverted photos (expected latents/*.safetensors from `bench invert`)")
    rows = []
    for f in files:
        try:
            with safe_open(str(f), "pt") as h:
                meta = dict(h.metadata() or {})
                latent = h.get_tensor("latent")
        except Exception as e:   # a damaged file names itself
            raise BenchError(f"cannot read {f}: {e}") from None
        rows.append({**meta, "latent": latent, "file": f})
    return rows


def write_quality_table(out: Path) -> Path:
    import pandas as pd

    from latent_edit_bench.fs import atomic

    rows = [{"name": r["name"], "source": r["source"], **{k: float(r[k]) for k in QUALITY_COLUMNS if k in r}}
            for r in read_inverted(out)]
    path = out / "quality.csv"
    with atomic(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.4f")
    return path
