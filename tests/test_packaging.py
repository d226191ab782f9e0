"""models/ and guides/ ship inside pgm_control, never as top-level packages."""

import importlib.util
import pathlib
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_subpackages_resolve_inside_pgm_control():
    import pgm_control.guides
    import pgm_control.models

    assert pathlib.Path(pgm_control.models.__file__).parent.name == "models"
    assert pathlib.Path(pgm_control.guides.__file__).parent.name == "guides"
    assert "control_model" in pgm_control.__all__
    for name in pgm_control.__all__:
        assert hasattr(pgm_control, name), name


def test_no_top_level_models_or_guides_installed():
    for name in ("models", "guides"):
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        # the repo root (or tests/, whose models/ and guides/ folders mirror the package) may be
        # on sys.path when pytest runs from it; nothing may be *installed* under these names
        places = list(spec.submodule_search_locations or []) or [spec.origin]
        assert all(pathlib.Path(p).resolve().is_relative_to(ROOT) for p in places), places


def test_wheel_layout(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("pgm_control-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pgm_control/models/control.py" in names
    assert "pgm_control/guides/__init__.py" in names
    assert not any(n.startswith(("models/", "guides/")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "pgm-control = pgm_control.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
