"""Build the documentation site: ``python docs/build.py`` (after ``pip install -e ".[docs]"``).

1. Execute every ``notebooks/*.ipynb`` once, with its smoke settings (``CI=true``), into
   ``docs/notebooks/`` — failing on any error (this is CI's notebook run);
2. ``sphinx-build -W --keep-going`` into ``docs/_build/html``: a broken cross-reference or a
   docstring that does not render fails the build;
3. check that every local link and image of the built pages exists (``docs/check_links.py``).

Options: ``--full`` executes the notebooks at full settings (what a reader gets, slower);
``--skip-notebooks`` reuses the executed copies already in ``docs/notebooks/``.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
EXECUTED = DOCS / "notebooks"
HTML = DOCS / "_build" / "html"


def _run(*cmd) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="notebooks at full settings")
    parser.add_argument(
        "--skip-notebooks",
        action="store_true",
        help="reuse the executed notebooks in docs/notebooks/",
    )
    args = parser.parse_args(argv)
    try:
        if not args.skip_notebooks:
            shutil.rmtree(EXECUTED, ignore_errors=True)
            smoke = [] if args.full else ["--smoke", "--limit", "300"]
            _run(
                sys.executable,
                ROOT / "benchmarks" / "notebook_timings.py",
                "notebooks/*.ipynb",
                *smoke,
                "--output-dir",
                EXECUTED,
            )
        shutil.rmtree(DOCS / "api", ignore_errors=True)  # regenerated from the package
        _run(
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            DOCS / "_build" / "doctrees",
            DOCS,
            HTML,
        )
        _run(sys.executable, DOCS / "check_links.py", HTML)
    except subprocess.CalledProcessError as exc:
        print(f"docs build failed: {exc}", file=sys.stderr)
        return 1
    print(f"built {HTML / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
