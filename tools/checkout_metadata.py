"""Write the dist-info an install of this checkout would make (METADATA + entry_points.txt), from
pyproject.toml, into a folder on PYTHONPATH: the built-in plugins then register through the
`latent_edit_bench` entry-point group without pip (tools/checkout_env.sh, on a lent GPU machine).

    python tools/checkout_metadata.py PYPROJECT SITE

Exits 1 with one line if pyproject.toml has no version or no [project.entry-points.latent_edit_bench]
table (the names an install registers), so a broken checkout is never reported as ready.
"""

from __future__ import annotations

import sys
from pathlib import Path

GROUP = "latent_edit_bench"


def read(pyproject: Path) -> tuple[str, dict]:
    try:
        import tomllib                       # Python >= 3.11
    except ModuleNotFoundError:              # pragma: no cover - 3.10
        import tomli as tomllib
    data = tomllib.loads(Path(pyproject).read_text())
    project = data.get("project", {})
    version = project.get("version")
    points = project.get("entry-points", {}).get(GROUP)
    if not version or not points:
        raise SystemExit(f"{pyproject}: no project.version or no [project.entry-points.{GROUP}] table")
    return version, points


def write(pyproject: Path, site: Path) -> Path:
    version, points = read(pyproject)
    d = Path(site) / f"latent_edit_bench-{version}.dist-info"
    d.mkdir(parents=True, exist_ok=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: latent-edit-bench\nVersion: {version}\n")
    (d / "entry_points.txt").write_text(f"[{GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    return d


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[3].strip())
    print(write(Path(sys.argv[1]), Path(sys.argv[2])))
