"""Notebooks are committed clean and CI executes them.

The notebooks are *run* by CI as ``python docs/build.py``, which executes every
``notebooks/*.ipynb`` once (with ``CI`` set, their ``parameters`` cell picks tiny sizes) and
renders the executed copies in the documentation; this module checks how they are stored.
"""

import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs(path):
    nb = _load(path)
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, (
        f"{path.name} has outputs or execution counts in cells {dirty}; clear them before "
        "committing (e.g. `jupyter nbconvert --clear-output --inplace`)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_format_and_parameters_cell(path):
    nb = _load(path)
    assert nb["nbformat"] == 4
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    first = code_cells[0]
    assert "parameters" in first.get("metadata", {}).get("tags", []), (
        f"{path.name}: the first code cell must be tagged `parameters`"
    )
    source = "".join(first["source"])
    assert "SMOKE" in source and '"CI"' in source, (
        f"{path.name}: the parameters cell must derive a SMOKE switch from the CI variable"
    )


def test_ci_executes_the_notebooks():
    script = ROOT / ".ci" / "run"
    assert script.exists(), ".ci/run is missing"
    text = script.read_text(encoding="utf-8")
    # docs/build.py executes every notebooks/*.ipynb (smoke settings, fails on any error)
    # and renders those executed copies: CI's one notebook run
    assert "python docs/build.py" in text, ".ci/run must run `python docs/build.py`"
    build = (ROOT / "docs" / "build.py").read_text(encoding="utf-8")
    assert "notebooks/*.ipynb" in build and "--smoke" in build
