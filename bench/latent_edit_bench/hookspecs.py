"""Hook specifications: the whole plugin API of latent-edit-bench.

A plugin is any module with functions decorated by :data:`hookimpl` (also ``latent_edit_bench.api.hookimpl``)
whose names match the specs below. Make it discoverable by declaring an entry point in the
``latent_edit_bench`` group of your package's ``pyproject.toml``::

    [project.entry-points.latent_edit_bench]
    my_method = "my_package.plugin"

The built-in backbones, instruments, methods and metrics are modules of exactly this kind (their
``plugin.py``), registered directly by ``latent_edit_bench.plugins``, so they double as worked examples.

Every ``register_*`` hook returns a list of :class:`latent_edit_bench.registry.Entry`, each naming a
factory. Factories are called lazily, only when a run asks for that name, so listing plugins
never loads weights.
"""

import pluggy

hookspec = pluggy.HookspecMarker("latent_edit_bench")
hookimpl = pluggy.HookimplMarker("latent_edit_bench")   # what a plugin decorates its register_* functions with


@hookspec
def register_backbones():
    """Return generator backbones: ``[Entry(name, factory, summary)]``.

    ``factory(**options) -> latent_edit_bench.contracts.backbone.Backbone``. Options come from the command line
    (``--weights``, ``--truncation``...); a factory ignores what it does not use.
    """


@hookspec
def register_instruments():
    """Return measuring networks (landmarks, emotions, attributes, identity, perceptual).

    ``factory(**options) -> latent_edit_bench.contracts.instrument.Instrument``. An instrument maps images in
    [-1, 1] of any size to named tensors and declares its outputs and asset provenance.
    """


@hookspec
def register_methods():
    """Return latent editing methods: ``factory(**config) -> editor`` with ``fit`` and ``edit``."""


@hookspec
def register_regularisers():
    """Return loss terms a trainable method can take, spelt ``<method>+<name>`` in ``--methods``:
    ``factory`` is a class whose ``compose(editor_cls, name) -> editor class`` mixes the term in
    (see ``methods/latent_edit_bench/methods/regularisers.py``)."""


@hookspec
def register_metrics():
    """Return metrics: ``factory(**config) -> metric`` with a batched measure and a summarise step."""


@hookspec
def register_attributes():
    """Return attribute names this plugin knows about (for ``bench list``): a list of str."""
