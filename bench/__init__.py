"""latent-edit-bench: compare latent-space face editors by how much they disturb expression."""

__version__ = "0.1.0"

from latent_edit_bench.registry import Entry  # noqa: E402  (the two names a plugin author needs)
from latent_edit_bench.plugins import hookimpl  # noqa: E402

__all__ = ["Entry", "hookimpl", "__version__"]
