"""Build the plugin manager: the built-in plugins registered directly, third-party ones through the
``latent_edit_bench`` entry-point group. The built-ins are plain plugin modules, written exactly as a
third-party plugin is (a module of ``@hookimpl`` functions), so they are the examples of how to write one."""

from __future__ import annotations

import functools

import pluggy

from latent_edit_bench import hookspecs
from latent_edit_bench.errors import BenchError
from latent_edit_bench.hookspecs import hookimpl  # noqa: F401  (re-exported: plugins.hookimpl)
from latent_edit_bench.registry import MethodRegistry, Registry
from latent_edit_bench.version import __version__


GROUP = "latent_edit_bench"
# name -> module of the built-in plugins, registered directly (as datasette does): nothing depends on
# installed metadata, so a plain checkout works. Their names are taken, so an entry point of an older
# install that still lists them is skipped, not registered twice.
BUILTIN_PLUGINS = {
    "backbones": "latent_edit_bench.backbones.plugin",
    "instruments": "latent_edit_bench.instruments.plugin",
    "methods": "latent_edit_bench.methods.plugin",
    "metrics": "latent_edit_bench.metrics.plugin",
}


def make_plugin_manager(extra_plugins=()) -> pluggy.PluginManager:
    import importlib

    pm = pluggy.PluginManager("latent_edit_bench")
    pm.add_hookspecs(hookspecs)
    for name, module in BUILTIN_PLUGINS.items():
        pm.register(importlib.import_module(module), name=name)
    try:
        pm.load_setuptools_entrypoints(GROUP)
    except Exception as e:   # a third-party plugin that does not import: one line naming it, not pluggy's traceback
        raise broken_plugin(e) from None
    for plugin in extra_plugins:  # for tests and notebooks: register a module or object directly
        pm.register(plugin)
    pm.check_pending()            # a hookimpl without a hookspec (a misspelt register_*) fails here, loudly
    return pm


def broken_plugin(error: Exception) -> BenchError:
    """A BenchError naming the entry point of the ``latent_edit_bench`` group that fails to load (found by
    loading each in turn), its distribution and the error, and what to do."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=GROUP):
        try:
            ep.load()
        except Exception as e:
            dist = getattr(ep, "dist", None)
            where = f" (distribution {dist.name} {dist.version})" if dist is not None else ""
            return BenchError(f"plugin {ep.name!r} = {ep.value}{where} failed to load: {type(e).__name__}: {e}; "
                              f"fix it or uninstall it (pip uninstall {dist.name if dist is not None else '<its package>'})")
    return BenchError(f"a plugin of the {GROUP!r} entry-point group failed to load: {type(error).__name__}: {error}")


def plugin_versions(pm: pluggy.PluginManager) -> list[dict]:
    """Every registered plugin with the distribution and version it came from (None: registered directly)."""
    dist = {id(plugin): d for plugin, d in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in pm.list_name_plugin():
        d = dist.get(id(plugin))
        if d is None and BUILTIN_PLUGINS.get(name) == getattr(plugin, "__name__", None):   # ours, registered directly
            out.append({"plugin": name, "distribution": "latent-edit-bench", "version": __version__})
            continue
        out.append({"plugin": name, "distribution": d.project_name if d else None,
                    "version": d.version if d else None})
    return sorted(out, key=lambda r: r["plugin"] or "")


def _collect(pm: pluggy.PluginManager, hook_name: str):
    """Per-plugin results of a register_* hook, in registration order, with the plugin's name."""
    out = []
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):  # pluggy calls LIFO; keep FIFO
        out.append((pm.get_name(impl.plugin) or repr(impl.plugin), impl.function()))
    return out


class Plugins:
    """The registries of one plugin manager: ``plugins.backbones.create("dcgan")`` and so on."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.backbones = Registry("backbone", _collect(pm, "register_backbones"))
        self.instruments = Registry("instrument", _collect(pm, "register_instruments"))
        self.regularisers = Registry("regulariser", _collect(pm, "register_regularisers"))
        self.methods = MethodRegistry(_collect(pm, "register_methods"), self.regularisers)
        self.metrics = Registry("metric", _collect(pm, "register_metrics"))

    def versions(self) -> list[dict]:
        """Every registered plugin with its distribution and version (the manifest's ``plugins``)."""
        return plugin_versions(self.pm)

    def attributes(self) -> list[str]:
        names: list[str] = []
        for _, attrs in _collect(self.pm, "register_attributes"):
            names.extend(a for a in attrs or [] if a not in names)
        return names


@functools.lru_cache(maxsize=1)
def get_plugins() -> Plugins:
    return Plugins(make_plugin_manager())
