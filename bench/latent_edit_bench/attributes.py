"""CelebA's 40 attribute names, in the dataset's column order (the order of R's 40 outputs)."""

from latent_edit_bench.errors import BenchError, did_you_mean

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)

# The paper's gesture features (Table IV): attributes an appearance edit should leave alone.
GESTURE_ATTRIBUTES = ("Smiling", "Mouth_Slightly_Open", "Narrow_Eyes")

# The 7 emotions every emotion instrument scores, in DeepFace's order (the `emotion` output's columns):
# the one definition; fer, face-api and oarriaga are mapped to it by their ports.
EMOTION_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def check_attributes(names, known=CELEBA_ATTRIBUTES, what: str = "--attrs") -> None:
    """The one attribute check: BenchError (exit 2) for a name not in ``known`` (with "did you mean"
    and the valid names) or one named twice in ``what``."""
    known = list(known)
    for a in names:
        if a not in known:
            raise BenchError(f"unknown attribute {a!r}{did_you_mean(a, known)}; valid: {', '.join(known)}")
    if len(set(names)) != len(names):
        raise BenchError(f"an attribute is named twice in {what}: {', '.join(names)}")
