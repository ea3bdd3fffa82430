"""``probe``: the offline attribute regressor R, built from face-api's networks and colour measurements.

No CelebA classifier can be had offline (SPEC section 6), so this instrument scores a subset of
the 40 CelebA attributes from things we can measure: three face-api networks (68 landmarks,
expressions, age/gender) and colours sampled in regions the landmarks place. Every step is
differentiable (colour samples use ``grid_sample`` at landmark-derived points), so methods can train
against it like EYE's R. Exact definitions of every attribute: docs/attributes.md.

Each score is ``sigmoid((f - centre) / scale)`` of one feature f. For the network outputs the
constants are fixed (Male, Smiling: f = logit of the net's probability, centre 0, scale 1, i.e. the
net's probability itself; Young: f = age in years, centre 35, scale -5). For the landmark-geometry and
colour features they were calibrated once by tools/measure/calibrate_probe.py on DCGAN samples: centre =
median, scale = IQR / 1.349 (a robust standard deviation), so each score is 0.5 on the median sample.
Colours are measured on the image standardised per sample (zero mean, unit std over all pixels and
channels), so no colour score moves when the whole image is darkened, brightened or changes contrast.
Unsupported attributes are NaN; ask ``require_supported`` before relying on a column.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.errors import BenchError
from latent_edit_bench.faces import LEFT_EYE_68, RIGHT_EYE_68
from latent_edit_bench.contracts.instrument import Instrument, Output, require_supported

# Instruments this one is built from (names in the plugin registry).
LANDMARKS, EXPRESSION, AGE_GENDER = "faceapi-landmarks", "faceapi-expression", "faceapi-age-gender"
HAPPY = 1          # index of "happy" in face-api's expression order
SAMPLE_SIZE = 96   # colours are sampled from the face resized to this (antialiased): same scale at any size
STD_FLOOR = 1e-2   # [0, 1] units; below it the image is blank and standardising would only amplify noise

# Fixed constants for network outputs: (centre, scale); f = logit(p) for probabilities, years for age.
FIXED = {
    "Male": (0.0, 1.0),
    "Smiling": (0.0, 1.0),
    "Young": (35.0, -5.0),   # 0.5 at 35 years; 0.88 at 25, 0.12 at 45
}

# BEGIN CALIBRATION (written by tools/measure/calibrate_probe.py; do not edit by hand)
CALIBRATION_SOURCE = 'tools/measure/calibrate_probe.py: dcgan, 2000 samples, seed 0'
CALIBRATION = {   # attribute: (centre, scale) of its feature
    'Bald': (-1.3435, 1.07908),
    'Big_Lips': (0.220576, 0.0292202),
    'Big_Nose': (-1.28858, 0.0717901),
    'Black_Hair': (0.0500785, 0.755817),
    'Blond_Hair': (0.331756, 0.943354),
    'Brown_Hair': (0.410252, 0.859221),
    'Bushy_Eyebrows': (0.343642, 0.494406),
    'Gray_Hair': (-1.32113, 1.01951),
    'Mouth_Slightly_Open': (0.0537351, 0.0473774),
    'Narrow_Eyes': (-0.288029, 0.0392207),
    'Pale_Skin': (-0.533752, 0.598153),
    'Wearing_Lipstick': (0.299772, 0.544043),
}
# END CALIBRATION

SUPPORTED = ("Bald", "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows",
             "Gray_Hair", "Male", "Mouth_Slightly_Open", "Narrow_Eyes", "Pale_Skin", "Smiling",
             "Wearing_Lipstick", "Young")
MEASURED = tuple(a for a in SUPPORTED if a not in FIXED)   # the calibrated ones
COLOUR_ATTRIBUTES = ("Bald", "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Pale_Skin",
                     "Wearing_Lipstick", "Bushy_Eyebrows")
# Which scores come from a trained network and which from a hand-made heuristic (geometry, colours):
# reports should not present a heuristic's change with the weight of a classifier's.
ATTRIBUTE_KINDS = {a: "network" if a in FIXED else "heuristic" for a in SUPPORTED}

# iBUG 68-point indices (0-based).
R_EYE, L_EYE = RIGHT_EYE_68, LEFT_EYE_68     # the subject's right eye is on the image's left
BROWS = slice(17, 27)
# Lip body: midpoints of outer/inner contour pairs (upper 50-61, 51-62, 52-63; lower 58-67, 57-66, 56-65).
LIP_OUTER, LIP_INNER = [50, 51, 52, 58, 57, 56], [61, 62, 63, 67, 66, 65]


def _luma(rgb):
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _opponent(rgb):
    """Redness (R - G), yellowness ((R + G)/2 - B) and chroma of rgb (any units: linear in them)."""
    a = rgb[..., 0] - rgb[..., 1]
    b = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return a, b, torch.sqrt(a * a + b * b + 1e-6)


def _standardise(img, weight):
    """(img - mean) / std per sample over all pixels and channels, pixels weighted by ``weight``
    [B, 1, H, W] (0 on the padding, so a non-square input's black border does not enter the stats).

    Any global x -> a x + b (a > 0) cancels: colour features in these units cannot be moved by
    relighting the whole image, only by changing colours relative to the rest of it."""
    w = weight.expand_as(img)
    n = w.sum((1, 2, 3), keepdim=True)
    mean = (w * img).sum((1, 2, 3), keepdim=True) / n
    var = (w * (img - mean) ** 2).sum((1, 2, 3), keepdim=True) / n
    return (img - mean) / var.sqrt().clamp_min(STD_FLOOR)


def _dist(p, q):
    return torch.sqrt(((p - q) ** 2).sum(-1) + 1e-12)


def pad_square(images: torch.Tensor) -> torch.Tensor:
    """Centre an image on a black square (what face-api does), so landmarks are fractions of it."""
    h, w = images.shape[-2:]
    if h == w:
        return images
    s = max(h, w)
    left, top = (s - w) // 2, (s - h) // 2
    return F.pad(images, (left, s - w - left, top, s - h - top), value=-1.0)


def _grid(offsets_a, offsets_b):
    a = torch.tensor(offsets_a, dtype=torch.float32)
    b = torch.tensor(offsets_b, dtype=torch.float32)
    return torch.stack(torch.meshgrid(a, b, indexing="ij"), -1).reshape(-1, 2)   # [N, 2] in (across, down)


# Sampling patterns in face units (IOD = inter-ocular distance; "down" = from the brows to the chin).
HAIR_PATTERN = _grid([-0.6, -0.3, 0.0, 0.3, 0.6], [-0.8, -1.0, -1.2])   # top of the head, above the brows
CHEEK_PATTERN = _grid([-0.08, 0.0, 0.08], [-0.08, 0.0, 0.08])
BROW_DEPTHS = (0.0, 0.06, 0.12)                                          # from the brow points towards the eye


class Probe(Instrument):
    name = "probe"
    differentiable = True
    assets = ()   # built from other instruments' assets; its calibration constants live in this module
    outputs = (
        Output("attributes", (len(CELEBA_ATTRIBUTES),), (0.0, 1.0), "probability", CELEBA_ATTRIBUTES,
               "CelebA attribute scores; NaN where unsupported (see supported_attributes)"),
        Output("landmarks", (68, 2), (0.0, 1.0), "fraction of the padded square image",
               ("x", "y"), "face-api's 68 iBUG landmarks the regions were placed by"),
    )

    def __init__(self, landmarks=None, expression=None, age_gender=None, symmetric: bool = True):
        super().__init__()
        self.symmetric = symmetric
        if landmarks is None or expression is None or age_gender is None:
            from latent_edit_bench.instruments import faceapi   # its parts, by their module: no detour through the plugin manager

            landmarks = faceapi.landmarks() if landmarks is None else landmarks
            expression = faceapi.expression() if expression is None else expression
            age_gender = faceapi.age_gender() if age_gender is None else age_gender
        self.landmark_net, self.expression_net, self.age_gender_net = landmarks, expression, age_gender
        self.supported_attributes = SUPPORTED
        self.attribute_kinds = dict(ATTRIBUTE_KINDS)
        self.register_buffer("supported", torch.tensor([a in SUPPORTED for a in CELEBA_ATTRIBUTES]),
                             persistent=False)
        self.register_buffer("supported_columns", torch.tensor([CELEBA_ATTRIBUTES.index(a) for a in SUPPORTED]),
                             persistent=False)
        self.register_buffer("hair_pattern", HAIR_PATTERN, persistent=False)
        self.register_buffer("cheek_pattern", CHEEK_PATTERN, persistent=False)
        centre, scale = [], []
        for a in CELEBA_ATTRIBUTES:
            c, s = FIXED.get(a) or CALIBRATION.get(a) or (float("nan"), float("nan"))
            centre.append(c)
            scale.append(s)
        self.register_buffer("centre", torch.tensor(centre), persistent=False)
        self.register_buffer("scale", torch.tensor(scale), persistent=False)

    # -- measurements ----------------------------------------------------------------------------
    def features(self, images: torch.Tensor, only: str | None = None) -> dict[str, torch.Tensor]:
        """Raw features f [B] per supported attribute, plus the landmarks they were placed by.

        ``only``: compute just what that attribute needs (one or two of the three nets): the matched
        search scores one attribute hundreds of times, and Male needs no landmarks, Bald no age net.

        With ``symmetric`` (default) every feature is the mean of f(image) and f(mirrored image): the
        attributes are mirror-symmetric, but face-api's nets are not (on DCGAN samples a flip moves
        P(male) by 0.16 and Narrow_Eyes by 0.16 on average), so averaging halves the instrument's noise.
        """
        x = pad_square(images)
        content = (pad_square(torch.ones_like(images[:, :1])) + 1) / 2   # 1 on the image, 0 on the padding
        b = x.shape[0]
        # both views, image then mirror, in one batch for every net (the face-api nets run channels-last:
        # on this CPU a batch of 2B costs 1.7-1.9x one of B)
        views = torch.cat([x, x.flip(-1)]) if self.symmetric else x
        f = {}
        if only in (None, "Male", "Young"):
            ag = self.age_gender_net(views)
            f.update(Male=torch.logit(ag["male"].clamp(1e-6, 1 - 1e-6)), Young=ag["age"])
        if only in (None, "Smiling"):
            happy = self.expression_net(views)["expression"][:, HAPPY]
            f["Smiling"] = torch.logit(happy.clamp(1e-6, 1 - 1e-6))
        lm = None
        if only is None or only in MEASURED:
            lm = self.landmark_net(views)["landmarks"]   # [B, 68, 2], fractions of x
            f.update(self._geometry(lm))
            masks = torch.cat([content, content.flip(-1)]) if self.symmetric else content
            f.update(self._colours(views, masks, lm))
        if self.symmetric:
            f = {k: (v[:b] + v[b:]) / 2 for k, v in f.items()}
        if lm is not None:
            f["landmarks"] = lm[:b]
        return f

    def _frame(self, lm):
        """Eye centres, inter-ocular distance and the face's across/down unit vectors (in-plane roll)."""
        er, el = lm[:, R_EYE].mean(1), lm[:, L_EYE].mean(1)
        iod = _dist(el, er)
        across = (el - er) / iod[:, None]
        down = torch.stack([-across[:, 1], across[:, 0]], -1)        # across rotated +90 degrees (y points down)
        return iod, across, down

    def _geometry(self, lm):
        p = lambda i: lm[:, i]                                        # noqa: E731
        iod, _, _ = self._frame(lm)
        face_h = _dist(p(27), p(8))                                   # nose bridge top to chin
        gap = (_dist(p(61), p(67)) + _dist(p(62), p(66)) + _dist(p(63), p(65))) / 3
        ear = lambda e: ((_dist(p(e + 1), p(e + 5)) + _dist(p(e + 2), p(e + 4)))   # noqa: E731
                         / (2 * _dist(p(e), p(e + 3))))
        return {
            "Mouth_Slightly_Open": gap / face_h,
            "Narrow_Eyes": -(ear(36) + ear(42)) / 2,
            "Big_Lips": (_dist(p(51), p(62)) + _dist(p(57), p(66))) / iod,
            "Big_Nose": torch.log(_dist(p(31), p(35)) / iod) + torch.log(_dist(p(27), p(33)) / iod),
        }

    def _colours(self, x, content, lm):
        resize = lambda t: F.interpolate(t, size=(SAMPLE_SIZE, SAMPLE_SIZE), mode="bilinear",   # noqa: E731
                                         align_corners=False, antialias=True)
        # Standardised units: all features below are differences or linear in them, so a global change of
        # brightness/contrast cannot pass as an attribute change (a darker face is not a balder one).
        img = _standardise(resize((x + 1) / 2), resize(content))
        iod, across, down = self._frame(lm)
        unit = iod[:, None, None]

        def place(origin, pattern):   # pattern [N, 2] in IOD units (across, down) -> image fractions [B, N, 2]
            return (origin[:, None] + unit * (pattern[None, :, :1] * across[:, None]
                                              + pattern[None, :, 1:] * down[:, None]))

        def sample(pts):               # [B, N, 2] fractions -> [B, N, 3] rgb
            out = F.grid_sample(img, (pts * 2 - 1)[:, :, None], mode="bilinear",
                                padding_mode="border", align_corners=False)
            return out[..., 0].transpose(1, 2)

        brow_mid = lm[:, BROWS].mean(1)
        hair = sample(place(brow_mid, self.hair_pattern)).mean(1)
        cheek_r = (lm[:, 2] + lm[:, 31] + lm[:, 41]) / 3             # centroid of jaw, nose wing, lower lid
        cheek_l = (lm[:, 14] + lm[:, 35] + lm[:, 46]) / 3
        skin = torch.cat([sample(place(cheek_r, self.cheek_pattern)),
                          sample(place(cheek_l, self.cheek_pattern))], 1).mean(1)
        lips = sample((lm[:, LIP_OUTER] + lm[:, LIP_INNER]) / 2).mean(1)
        brow_pts = torch.cat([lm[:, BROWS] + d * unit * down[:, None] for d in BROW_DEPTHS], 1)
        brow = sample(brow_pts)

        y_hair, y_skin = _luma(hair), _luma(skin)
        a_hair, b_hair, c_hair = _opponent(hair)
        a_skin, _, c_skin = _opponent(skin)
        a_lip, _, c_lip = _opponent(lips)
        # Lightness is relative to the image (0 = its mean, 1 = one std). Brown_Hair's "mid-dark" was
        # Y = 0.3 with weight 4 in [0, 1] units; the median DCGAN sample has mean 0.32 and std 0.175, so
        # that is Y = -0.15 std and weight 4 * 0.175 = 0.7 here.
        return {
            "Bald": -_dist(hair, skin),                                # top of the head coloured like skin
            "Black_Hair": -y_hair,
            "Blond_Hair": y_hair + b_hair,                             # light and yellow
            "Brown_Hair": a_hair + b_hair - 0.7 * (y_hair + 0.15) ** 2,   # warm hue at mid-dark lightness
            "Gray_Hair": y_hair - 2 * c_hair,                          # light and colourless
            "Pale_Skin": y_skin - c_skin,                              # skin light (for this image) and colourless
            "Wearing_Lipstick": (a_lip - a_skin) + (c_lip - c_skin),   # lips redder/more saturated than skin
            "Bushy_Eyebrows": (y_skin[:, None] - _luma(brow)).mean(1),   # brows darker than the skin, over a band
        }

    def _check_calibrated(self) -> None:
        missing = [a for a in MEASURED if a not in CALIBRATION]
        if missing:
            raise BenchError(f"probe is not calibrated for {', '.join(missing)}: run tools/measure/calibrate_probe.py")

    def score_attribute(self, images: torch.Tensor, attr: str) -> torch.Tensor:
        """R_k for one attribute [B]: equal to forward()'s column, computing only what it needs."""
        self._check_calibrated()
        if attr not in SUPPORTED:
            raise BenchError(f"instrument 'probe' does not score attribute {attr!r}; supported: {', '.join(SUPPORTED)}")
        k = CELEBA_ATTRIBUTES.index(attr)
        return torch.sigmoid((self.features(images, only=attr)[attr] - self.centre[k]) / self.scale[k])

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check_calibrated()
        f = self.features(images)
        b = images.shape[0]
        raw = torch.full((b, len(CELEBA_ATTRIBUTES)), float("nan"), device=images.device, dtype=f["Male"].dtype)
        raw = raw.index_copy(1, self.supported_columns, torch.stack([f[a] for a in SUPPORTED], 1))
        attrs = torch.sigmoid((raw - self.centre.to(raw)) / self.scale.to(raw))
        return {"attributes": attrs, "landmarks": f["landmarks"]}


def attribute_kind(instrument, attr: str) -> str:
    """"network" or "heuristic" for one attribute of an attribute instrument. Instruments without
    ``attribute_kinds`` (celeba-resnet50: a trained CelebA classifier) are networks for every attribute."""
    require_supported(instrument, attr)
    return getattr(instrument, "attribute_kinds", {}).get(attr, "network")


def probe(symmetric: bool = True, **options) -> Probe:
    if options:
        raise BenchError(f"instrument 'probe' takes only the option 'symmetric'; got {', '.join(options)}")
    return Probe(symmetric=symmetric)
