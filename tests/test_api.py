"""The public API: its names resolve, and docs/api.md's notebook example runs as written."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves():
    from latent_edit_bench import api

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    with pytest.raises(AttributeError, match="public names"):
        api.no_such_name  # noqa: B018


@pytest.mark.slow
def test_the_docs_notebook_example_runs(tmp_path, capsys):
    code = re.search(r"## A notebook session.*?```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S).group(1)
    cwd = os.getcwd()
    os.chdir(tmp_path)   # the example writes runs/ and cache/ where it runs
    try:
        exec(compile(code, "docs/api.md", "exec"), {"__name__": "__notebook__"})
    finally:
        os.chdir(cwd)
    folder = tmp_path / "runs" / "notebook"
    assert (folder / "report.html").is_file() and (folder / "summary.csv").is_file()
    assert "Male" in capsys.readouterr().out
