"""Built-in metrics, registered like any plugin (a module of hookimpls).

Factories are "module:Class" strings (imported on first use); ``factory(**config) -> Metric``.
"""

from __future__ import annotations

from latent_edit_bench.hookspecs import hookimpl
from latent_edit_bench.registry import Entry


@hookimpl
def register_metrics():
    return [
        Entry("edit", "latent_edit_bench.metrics.edit:Edit",
              "the target's R_k before and after the edit and the achieved change"),
        Entry("topk", "latent_edit_bench.metrics.topk:TopK",
              "relative change ratio |mean ΔR_j| / |mean ΔR_k| of every other attribute (paper Tables I-III)"),
        Entry("gesture", "latent_edit_bench.metrics.gesture:Gesture",
              "relative change ratio of Smiling, Mouth_Slightly_Open, Narrow_Eyes (paper Table IV)"),
        Entry("emotion", "latent_edit_bench.metrics.emotion:Emotion",
              "emotion disturbance |E(edit) - E(original)| in percentage points, paired and set-level (paper Table V)"),
        Entry("landmarks", "latent_edit_bench.metrics.landmarks:Landmarks",
              "mean 68-point landmark displacement, original vs edit, in inter-ocular distances (whole face, mouth, eyes+brows)"),
        Entry("mesh", "latent_edit_bench.metrics.mesh:Mesh",
              "mean 468-point face-mesh displacement (MediaPipe), original vs edit, in inter-ocular distances (opt-in)"),
        Entry("judge", "latent_edit_bench.metrics.judge:Judge",
              "the target's change by an independent judge net beside the trainer's, 'fooled the trainer' "
              "fraction, trainer-judge agreement, emotion disturbance by a second emotion net"),
        Entry("identity", "latent_edit_bench.metrics.identity:Identity",
              "cosine similarity of the 128-D face descriptors (original vs edit)"),
    ]
