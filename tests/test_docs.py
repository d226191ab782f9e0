"""The documentation tooling: the link checker finds what is broken (and only that), the
docstring escaping keeps Jupyter-style text intact, and the build is wired into CI.

The site itself is built by CI (``python docs/build.py``: notebooks, ``sphinx-build -W``, then
the link check on the real pages); these tests check the pieces on small hand-made inputs,
whose broken links are known by construction.
"""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_docs_{name}", ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_links = _load("check_links")

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def _site(tmp_path, index_body, extra=None):
    (tmp_path / "api").mkdir()
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "fig.png").write_bytes(PNG)
    (tmp_path / "_images" / "empty.png").write_bytes(b"")
    (tmp_path / "api" / "mod.html").write_text(
        '<html><body><h1 id="top">mod</h1><dt id="mod.f">f</dt>'
        '<a href="../index.html">up</a></body></html>'
    )
    (tmp_path / "index.html").write_text(f"<html><body>{index_body}</body></html>")
    for name, text in (extra or {}).items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_a_site_whose_references_all_resolve_passes(tmp_path):
    body = (
        '<a href="api/mod.html#mod.f">f</a> <a href="api/mod.html">mod</a> '
        '<a href="#here">self</a><span id="here"></span> <img src="_images/fig.png"> '
        '<a href="https://example.org/missing">external, not fetched</a> '
        '<a href="mailto:someone@example.org">mail</a> <img src="data:image/png;base64,AAAA">'
        '<script src="_images/fig.png"></script>'
    )
    assert check_links.check_site(_site(tmp_path, body)) == []


@pytest.mark.parametrize(
    "body, problem",
    [
        ('<a href="api/nope.html">x</a>', "api/nope.html does not exist"),
        ('<img src="_images/missing.png">', "_images/missing.png does not exist"),
        ('<img src="_images/empty.png">', "the image file is empty"),
        ('<img src="">', "empty src"),
        ('<a href="api/mod.html#mod.g">g</a>', "no anchor #mod.g in mod.html"),
        ('<a href="#nowhere">x</a>', "no anchor #nowhere in index.html"),
        ('<link rel="stylesheet" href="_static/gone.css">', "_static/gone.css does not exist"),
    ],
)
def test_each_kind_of_broken_reference_is_reported(tmp_path, body, problem):
    problems = check_links.check_site(_site(tmp_path, body))
    assert len(problems) == 1 and problem in problems[0], problems
    assert problems[0].startswith("index.html: ")


def test_an_empty_folder_is_a_failure_and_main_exits_1(tmp_path, capsys):
    assert check_links.check_site(tmp_path) == [f"no HTML page under {tmp_path.resolve()}"]
    site = _site(tmp_path, '<a href="gone.html">x</a>')
    assert check_links.main([str(site)]) == 1
    assert "1 broken local links or images in 2 pages" in capsys.readouterr().out


def test_docstring_bars_are_escaped_outside_literals_only():
    conf = _load("conf")
    assert conf._escape_bars("q(a|s) and |ΔV| < tol") == r"q(a\|s) and \|ΔV\| < tol"
    assert conf._escape_bars("keep ``p(a|s)`` literal, not p(a|s)") == (
        r"keep ``p(a|s)`` literal, not p(a\|s)"
    )
    assert conf._escape_bars("| a line block") == "| a line block"  # starts a line: markup
    assert conf._escape_bars(r"already p(a\|s)") == r"already p(a\|s)"


def test_the_api_reference_walks_every_installed_package():
    api = (ROOT / "docs" / "api.rst").read_text()
    assert ":recursive:" in api
    for package in ("pgm_control", "pgm_control.models", "pgm_control.guides"):
        assert f"   {package}\n" in api
    template = (ROOT / "docs" / "_templates" / "autosummary" / "module.rst").read_text()
    assert ":recursive:" in template and "__main__" in template  # importing it would run the CLI
    toctree = (ROOT / "docs" / "notebooks.md").read_text()
    assert ":glob:" in toctree and "notebooks/*" in toctree  # new notebooks need no edit


def test_one_documented_build_command_is_what_ci_runs():
    command = "python docs/build.py"
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in ci and 'pip install -q -e ".[docs]"' in ci
    for page in ("README.md", "docs/install.md"):
        text = (ROOT / page).read_text()
        assert command in text and 'pip install -e ".[docs]"' in text, page
    build = (ROOT / "docs" / "build.py").read_text()
    assert '"-W",' in build and '"--keep-going",' in build and "check_links.py" in build
    assert 'nb_execution_mode = "off"' in (ROOT / "docs" / "conf.py").read_text()
    setup = (ROOT / "setup.cfg").read_text()
    assert "\ndocs =\n" in setup and "\nnotebooks =\n    jupyterlab" in setup


def test_literal_blocks_and_doctests_keep_their_bars():
    conf = _load("conf")
    lines = [
        "Recursion p(a|s)::",
        "",
        "    Q(s,a) = log Σ P(s'|s,a)",
        "",
        "after the block |x|",
        ">>> abs(-1) | 0",
    ]
    conf._process_docstring(None, "function", "f", None, {}, lines)
    assert lines == [
        r"Recursion p(a\|s)::",
        "",
        "    Q(s,a) = log Σ P(s'|s,a)",
        "",
        r"after the block \|x\|",
        ">>> abs(-1) | 0",
    ]
