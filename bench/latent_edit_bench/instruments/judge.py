"""``judge``: the target attribute scored by a network the methods do not train against.

Every edit is trained against the attribute instrument R (the "trainer", e.g. ``probe``), so an edit
that fools R counts as reached. The judge instrument scores the same attributes with other networks:

    outputs  judge          [40]  CelebA order; NaN where no judge is configured
             judge_emotion  [7]   a second emotion net (DeepFace order), beside the run's emotion instrument

A judge spec is ``INSTRUMENT``, ``INSTRUMENT.OUTPUT`` or ``INSTRUMENT.OUTPUT[LABEL]``: e.g.
``oarriaga-gender.male``, ``oarriaga-emotion.emotion[happy]``, ``celeba-resnet50`` (an instrument with
an ``attributes`` output gives the attribute's column). Any registered instrument works, so users with
their own weights can bring their own judge (``bench run --judge Male=my-net``).

Built-in judges are independent of the default trainer (``probe``, built on face-api's nets): Male
by oarriaga's IMDB gender net, Smiling by P(happy) of oarriaga's FER2013 emotion net. No offline
network judges the other attributes (hair colour, Bald, Young, ...): the judge metric says so.
"""

from __future__ import annotations

import re

import torch

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES, EMOTION_LABELS, check_attributes
from latent_edit_bench.errors import BenchError
from latent_edit_bench.contracts.instrument import Instrument, Output

from latent_edit_bench.presets import DEFAULT_EMOTION_JUDGE, DEFAULT_JUDGES  # noqa: E402,F401  (re-exported)
SPEC = re.compile(r"^(?P<inst>[^.\[\]]+)(?:\.(?P<out>[^.\[\]]+))?(?:\[(?P<label>[^\[\]]+)\])?$")


def parse_spec(spec: str) -> tuple[str, str | None, str | None]:
    m = SPEC.match(spec.strip())
    if not m:
        raise BenchError(f"judge {spec!r}: expected INSTRUMENT, INSTRUMENT.OUTPUT or INSTRUMENT.OUTPUT[LABEL], "
                         "e.g. oarriaga-gender.male")
    return m["inst"], m["out"], m["label"]


def check_judges(judges: dict, registry) -> None:
    """Fail early (before any work) on an unknown attribute or instrument."""
    for attr, spec in judges.items():
        check_attributes([attr], what="--judge")
        registry.get(parse_spec(spec)[0])   # UnknownName lists the valid instruments


def _select(inst: Instrument, spec: str, attr: str | None):
    """-> function(outputs dict) -> [B] scores, validated against the instrument's declared outputs."""
    _, out, label = parse_spec(spec)
    names = [o.name for o in inst.outputs]
    if out is None:
        if "attributes" in names and attr is not None:
            out, label = "attributes", attr
        elif len([o for o in inst.outputs if o.shape == ()]) == 1:
            out = next(o.name for o in inst.outputs if o.shape == ())
        else:
            raise BenchError(f"judge {spec!r}: name the output, e.g. {inst.name}.{names[0]}; outputs: {', '.join(names)}")
    o = inst.output(out)   # BenchError listing the outputs
    if o.shape == ():
        if label is not None:
            raise BenchError(f"judge {spec!r}: output {out!r} is a scalar, it has no labels")
        return lambda r: r[out]
    if out == "attributes" and not o.labels:
        labels = CELEBA_ATTRIBUTES
    else:
        labels = o.labels
    if label is None or label not in labels:
        raise BenchError(f"judge {spec!r}: pick one of output {out!r}'s labels in [...]: {', '.join(labels) or '(none)'}")
    i = list(labels).index(label)
    return lambda r: r[out][:, i]


class Judge(Instrument):
    name = "judge"
    differentiable = False
    outputs = (
        Output("judge", (40,), (0.0, 1.0), "probability (per judge)", labels=CELEBA_ATTRIBUTES,
               description="the attribute scored by its judge network; NaN where none is configured"),
        Output("judge_emotion", (7,), (0.0, 1.0), "probability",
               labels=EMOTION_LABELS,
               description="a second emotion network's probabilities (DeepFace order)"),
    )

    def __init__(self, judges: dict | None = None, emotion: str = DEFAULT_EMOTION_JUDGE, create=None):
        super().__init__()
        if create is None:   # the judge's nets come from the caller's registry, e.g. Session.instrument
            raise BenchError("the judge instrument needs create=<a loader of named instruments> "
                             "(a run passes its session's instrument)")
        self.specs = {**DEFAULT_JUDGES, **(judges or {})}
        self.emotion_spec = emotion
        nets: dict[str, Instrument] = {}
        for spec in list(self.specs.values()) + [emotion]:
            name = parse_spec(spec)[0]
            if name not in nets:
                nets[name] = create(name).eval()
        self.nets = torch.nn.ModuleDict(nets)
        self.select = {a: (parse_spec(s)[0], _select(nets[parse_spec(s)[0]], s, a)) for a, s in self.specs.items()}
        self.select_emotion = _select_emotion(nets[parse_spec(emotion)[0]], emotion)
        self.assets = tuple(a for n in nets.values() for a in n.assets)

    def train(self, mode: bool = True):
        return super().train(False)

    def judge_of(self, attr: str) -> str | None:
        return self.specs.get(attr)

    @torch.no_grad()
    def forward(self, images):
        outs = {name: net(images) for name, net in self.nets.items()}
        judge = torch.full((images.shape[0], len(CELEBA_ATTRIBUTES)), float("nan"), device=images.device)
        for attr, (name, pick) in self.select.items():
            judge[:, CELEBA_ATTRIBUTES.index(attr)] = pick(outs[name]).float()
        return {"judge": judge, "judge_emotion": self.select_emotion(outs).float()}


def _select_emotion(inst: Instrument, spec: str):
    name, out, label = parse_spec(spec)
    out = out or "emotion"
    o = inst.output(out)
    if o.shape != (7,) or label is not None:
        raise BenchError(f"emotion judge {spec!r}: needs a 7-way 'emotion' output in DeepFace order")
    return lambda outs: outs[name][out]


def judge(judges: dict | None = None, emotion: str = DEFAULT_EMOTION_JUDGE, create=None, **_options) -> Judge:
    return Judge(judges, emotion, create)
