"""`bench invert`, step 3: photo vs reconstruction, scored by instruments other than the projection's loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latent_edit_bench.errors import BenchError
from latent_edit_bench.faces import inter_ocular_68
from latent_edit_bench.invert.projection import perceptual_distance

# the roles quality() scores with; "auto": the first emotion backend that loads (emotion_instrument)
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
