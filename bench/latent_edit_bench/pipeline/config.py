"""A run's configuration: everything that determines its numbers (and its id), built and checked before any
work. ``make_config`` builds one from the CLI's or a notebook's arguments; ``validate`` refuses a bad one
with a BenchError naming what is valid."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from latent_edit_bench.attributes import check_attributes
from latent_edit_bench.contracts.artifacts import canonical_json
from latent_edit_bench.errors import BenchError
from latent_edit_bench.pipeline.protocol import LADDER_TOL

DEFAULT_METRICS = ("edit", "topk", "gesture", "emotion", "landmarks", "identity", "judge")
DEFAULT_INSTRUMENTS = {"attributes": "probe", "emotion": "auto", "landmarks": "faceapi-landmarks",
                       "descriptor": "faceapi-descriptor",
                       "judge": "judge", "judge_emotion": "judge",
                       "mesh": "mediapipe-facemesh"}   # role -> instrument name; loaded only if a metric needs it
DEFAULT_LEVELS = (0.1, 0.2, 0.3)   # 0.4: reached by fewer than half the samples for most methods in the demo
EMOTION_BACKENDS = ("deepface-emotion", "fer-emotion")   # "auto": the first that loads
SAMPLE_SEED_OFFSET = 1000   # evaluation samples are drawn from seed + 1000: held out from every fit
FIT_MODES = ("joint", "per-attribute")   # RunConfig.fit / --fit



@dataclass
class RunConfig:
    """Everything that determines a run's numbers (and its id). Paths and device are not part of it."""

    methods: tuple
    attrs: tuple
    backbone: str = "dcgan"
    weights: str | None = None
    preset: str = "quick"
    n: int | None = None                   # None: the preset's n_eval
    seed: int = 0
    fit_seeds: int | None = None           # K fits per method and attribute; None: the preset's
    fit: str = "joint"                     # FIT_MODES: joint-fitting methods fit all attrs at once, or per attribute
    levels: tuple = DEFAULT_LEVELS         # |achieved change of R_k|, each towards presence and absence
    tol: float = LADDER_TOL                # a level is reached within ±tol
    min_reach: float = 0.5                 # a method reaches a level when this fraction of samples does, every seed
    search_steps: int = 4                  # false-position refinements after the ladder's grid scan
    reference: str = "baseline"
    metrics: tuple = DEFAULT_METRICS
    instruments: dict = field(default_factory=lambda: dict(DEFAULT_INSTRUMENTS))
    trajectory: dict = field(default_factory=lambda: {"samples": 4})
    n_boot: int = 2000
    overrides: dict = field(default_factory=dict)   # {method: {option: value}} over the preset's config
    judges: dict = field(default_factory=dict)      # {attribute: judge spec} over the built-in judges (--judge)

    def to_dict(self) -> dict:
        return json.loads(canonical_json(dataclasses.asdict(self)))

    @property
    def run_id(self) -> str:
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()[:10]

    @property
    def fit_seed_list(self) -> list[int]:
        return [self.seed + k for k in range(int(self.fit_seeds))]

    @property
    def signed_levels(self) -> list[float]:
        return sorted([-float(v) for v in self.levels] + [float(v) for v in self.levels])


# -- set-up: validate everything before any work ----------------------------------------------------

def _split(names, option: str) -> tuple:
    """"a,b" (or a sequence) -> ("a", "b"); an empty item ("a,,b", "a,") is a BenchError: a list the shell
    or a script mangled should not run as a shorter one."""
    if isinstance(names, str):
        if not names.strip():
            return ()   # validate() says what an empty --methods / --attrs needs
        names = names.split(",")
    parts = tuple(str(n).strip() for n in names)
    if not all(parts):
        raise BenchError(f"{option} {','.join(parts)!r} has an empty item; write NAME1,NAME2,... without "
                         f"empty entries")
    return parts


def parse_levels(text: str) -> tuple:
    """"0.1,0.2,0.3" -> (0.1, 0.2, 0.3); a BenchError naming the problem for an empty item or a non-number
    (the range is checked by :func:`validate`)."""
    parts = [v.strip() for v in str(text).split(",")]
    if not all(parts):
        raise BenchError(f"--levels {text!r} has an empty item; write L1,L2,... e.g. 0.1,0.2,0.3")
    try:
        return tuple(float(v) for v in parts)
    except ValueError:
        raise BenchError(f"--levels {text!r}: expected numbers in (0, 1) separated by commas, e.g. 0.1,0.2,0.3") from None


def make_config(methods, attrs, preset: str = "quick", n: int | None = None, fit_seeds: int | None = None,
                levels=None, **kw) -> RunConfig:
    from latent_edit_bench.presets import preset as get_preset

    p = get_preset(preset)
    if levels is not None:
        kw["levels"] = parse_levels(levels) if isinstance(levels, str) else tuple(float(v) for v in levels)
    if kw.get("reference") is None:
        kw.pop("reference", None)
    cfg = RunConfig(methods=_split(methods, "--methods"), attrs=_split(attrs, "--attrs"), preset=preset, **kw)
    if "reference" not in kw and cfg.reference not in cfg.methods and cfg.methods:
        cfg.reference = cfg.methods[0]
    cfg.n = int(p["n_eval"]) if n is None else int(n)
    cfg.fit_seeds = int(p["fit_seeds"]) if fit_seeds is None else int(fit_seeds)
    return cfg


def validate(cfg: RunConfig, plugins) -> None:
    """Raise BenchError (exit 2) for anything wrong in the config, naming what is valid."""
    from latent_edit_bench.presets import PRESETS

    if not cfg.methods:
        raise BenchError("--methods needs at least one method; valid methods: " + ", ".join(plugins.methods.names()))
    if not cfg.attrs:
        raise BenchError("--attrs needs at least one attribute")
    if len(set(cfg.methods)) != len(cfg.methods):
        raise BenchError(f"a method is named twice in --methods: {', '.join(cfg.methods)}")
    for m in cfg.methods:
        plugins.methods.get(m)
    if cfg.reference not in cfg.methods:
        raise BenchError(f"--reference {cfg.reference!r} is not in --methods ({', '.join(cfg.methods)}); "
                         f"name one of them, e.g. --reference {cfg.methods[0]}")
    check_attributes(cfg.attrs, plugins.attributes())
    if cfg.n is None or cfg.n <= 0:
        raise BenchError(f"-n must be a positive number of samples, got {cfg.n}")
    if cfg.fit_seeds is None or cfg.fit_seeds < 1:
        raise BenchError(f"--fit-seeds must be at least 1, got {cfg.fit_seeds}")
    if cfg.fit not in FIT_MODES:
        raise BenchError(f"--fit must be one of {', '.join(FIT_MODES)}, got {cfg.fit!r}")
    if not cfg.levels:
        raise BenchError("--levels needs at least one level")
    bad = [v for v in cfg.levels if not 0 < v < 1]
    if bad:
        raise BenchError(f"--levels must lie in (0, 1) (achieved changes of R_k, applied in both directions); "
                         f"got {', '.join(f'{v:g}' for v in bad)}")
    if len(set(cfg.levels)) != len(cfg.levels):
        raise BenchError(f"a level is named twice in --levels: {', '.join(f'{v:g}' for v in cfg.levels)}")
    if not 0 < cfg.tol < 0.5:
        raise BenchError(f"--tol must be in (0, 0.5), got {cfg.tol}")
    if not 0 < cfg.min_reach <= 1:
        raise BenchError(f"--min-reach must be in (0, 1], got {cfg.min_reach}")
    if cfg.preset not in PRESETS:
        raise BenchError(f"unknown preset {cfg.preset!r}; valid presets: {', '.join(PRESETS)}")
    for m in cfg.metrics:
        plugins.metrics.get(m)
    plugins.backbones.get(cfg.backbone)
    for role, name in cfg.instruments.items():
        if not (role == "emotion" and name == "auto"):
            plugins.instruments.get(name)
    from latent_edit_bench.instruments.judge import check_judges

    check_judges(cfg.judges, plugins.instruments)


def make_metrics(cfg: RunConfig, plugins, names=None) -> dict:
    """{name: metric} for ``names`` (default: the config's); the judge metric labels its rows with the run's
    judge specs (--judge), the other built-ins take no options from the config."""
    return {m: plugins.metrics.create(m, **({"judges": dict(cfg.judges)} if m == "judge" else {}))
            for m in (cfg.metrics if names is None else names)}


def config_from_dict(d: dict) -> RunConfig:
    """The RunConfig whose ``to_dict()`` is ``d`` (a manifest's or a job spec's config)."""
    tuples = {f.name for f in dataclasses.fields(RunConfig) if f.type == "tuple"}
    return RunConfig(**{k: tuple(v) if k in tuples else v for k, v in d.items()})

