"""``bench invert``: real face photos -> aligned crops -> latents in the backbone's edit space.

Three steps, each replaceable on its own, one module each:

1. align.py: alignment (:func:`align_faces`, the seam where a face detector plugs in): one photo in, a
   list of crops aligned the way the backbone's own samples are.
2. projection.py: projection (:func:`project`): optimisation of the edit-space latent against a
   perceptual plus a pixel term.
3. quality.py: photo vs reconstruction (:func:`quality`), with instruments other than the loss's:
   landmark error in inter-ocular distances, identity cosine, emotion agreement.

command.py runs them over a list of photos (:func:`invert_photos`); folder.py owns the output folder
(docs/augment.md) and reads it back (:func:`read_inverted`, for ``bench augment``).
"""

from latent_edit_bench.invert.align import (NotAligned, Template, align_faces, alignment_template, check_aligned,
                                            detected_boxes, similarity)
from latent_edit_bench.invert.command import invert_photos
from latent_edit_bench.invert.folder import QUALITY_COLUMNS, read_inverted, write_quality_table
from latent_edit_bench.invert.projection import InvertConfig, Projection, perceptual_distance, project
from latent_edit_bench.invert.quality import INVERT_ROLES, emotion_instrument, quality

__all__ = ["INVERT_ROLES", "QUALITY_COLUMNS", "InvertConfig", "NotAligned", "Projection", "Template", "align_faces",
           "alignment_template", "check_aligned", "detected_boxes", "emotion_instrument", "invert_photos",
           "perceptual_distance", "project", "quality", "read_inverted", "similarity", "write_quality_table"]
