"""Run imitation's MCE IRL (the maintained peer) in its own venv, tables in and out as .npz.

imitation pins gymnasium 0.29 (and SB3 2.2.1), which this project does not use, so the peer
lives in a venv of its own, created on first use and reused after::

    python -m venv ~/.cache/pgm_control/imitation-venv
    ~/.cache/pgm_control/imitation-venv/bin/pip install torch==2.13.0 imitation

(about 70 s). The worker, ``_imitation_worker.py``, runs there and never imports
pgm_control; problems and results cross over as plain numpy arrays (no pickled torch objects).

    from imitation_peer import ensure_venv, export_problems, run_mce_irl
    python = ensure_venv()
    tables = export_problems(["cliffworld", "random500"], python)   # seals' own tables
    out = run_mce_irl({"cliffworld": {...}}, python)                 # state OM, reward, s/iter

    python benchmarks/imitation_peer.py          # make (or check) the venv and print versions
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_imitation_worker.py"
DEFAULT_VENV = Path(
    os.environ.get("PGM_CONTROL_IMITATION_VENV", "~/.cache/pgm_control/imitation-venv")
).expanduser()
REQUIREMENTS = ["torch==2.13.0", "imitation"]
JOB_KEYS = ("transition", "initial", "horizon", "observation", "demo_state_om")
JOB_DEFAULTS = {"lr": 0.1, "max_iter": 1000, "linf_eps": 1e-3, "seed": 0}


class PeerUnavailable(RuntimeError):
    """The imitation venv could not be made or used (no network, pip failed, ...)."""


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _works(python: Path) -> bool:
    if not python.exists():
        return False
    probe = [str(python), "-c", "import imitation, seals, gymnasium"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def ensure_venv(venv: str | os.PathLike = DEFAULT_VENV, *, create: bool = True) -> Path:
    """The python of a venv where ``import imitation`` works, made (once) if needed.

    Raises:
        PeerUnavailable: the venv is missing and ``create`` is False, or making it failed.
    """
    venv = Path(venv).expanduser()
    python = _python(venv)
    if _works(python):
        return python
    if not create:
        raise PeerUnavailable(f"no imitation venv at {venv} (run benchmarks/imitation_peer.py)")
    print(f"creating imitation's venv at {venv} (once; about 70 s) ...", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", *REQUIREMENTS],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise PeerUnavailable(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    if not _works(python):
        raise PeerUnavailable(f"imitation does not import in {venv}")
    return python


def _worker(python: Path, *args: str, threads: int = 1) -> None:
    cmd = [str(python), str(WORKER), *args, "--threads", str(threads)]
    # numpy's BLAS gets the same number of threads as torch: a like-for-like timing
    limits = {
        k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **limits})
    if proc.returncode != 0:
        raise PeerUnavailable(f"imitation worker failed:\n{proc.stderr[-3000:]}")


def _unpack(npz) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for key in npz.files:
        name, field = key.split("/", 1)
        out.setdefault(name, {})[field] = npz[key]
    return out


def export_problems(names, python: Path) -> dict[str, dict[str, np.ndarray]]:
    """Tables of seals' problems ("cliffworld", "random500"), built by seals itself.

    Returns {name: {"transition" (S,A,S), "reward" (S,), "initial" (S,), "horizon" (),
    "observation" (S, F)}} in float64; transition rows renormalised in float64 (seals
    stores float32).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "problems.npz"
        _worker(python, "export", *names, "--out", str(out))
        with np.load(out) as npz:
            tables = _unpack(npz)
    for t in tables.values():
        t["transition"] = t["transition"] / t["transition"].sum(-1, keepdims=True)
    return tables


def run_mce_irl(jobs: dict[str, dict], python: Path, *, threads: int = 1) -> dict[str, dict]:
    """Run imitation's ``MCEIRL`` on each job, in one worker process.

    Args:
        jobs: {name: {"transition" (S,A,S), "initial" (S,), "horizon", "observation" (S,F)
            — the reward net's input, a linear net on it —, "demo_state_om" (S,) — Σ over
            t = 0..T of the demonstrator's state distribution, imitation's convention —, and
            optionally "lr" (Adam), "max_iter", "linf_eps", "seed"}}.
        python: from :func:`ensure_venv`.
        threads: torch threads in the worker.

    Returns:
        {name: {"state_om" (S,), "reward" (S,), "policy" (T,S,A), "step_seconds" (iters,),
        "total_seconds" ()}}.
    """
    arrays = {}
    for name, job in jobs.items():
        missing = [k for k in JOB_KEYS if k not in job]
        if missing:
            raise ValueError(f"job {name!r} lacks {missing}")
        for key, value in {**JOB_DEFAULTS, **job}.items():
            arrays[f"{name}/{key}"] = np.asarray(value)
    with tempfile.TemporaryDirectory() as tmp:
        jobs_path, out = Path(tmp) / "jobs.npz", Path(tmp) / "results.npz"
        np.savez(jobs_path, **arrays)
        _worker(python, "mceirl", str(jobs_path), "--out", str(out), threads=threads)
        with np.load(out) as npz:
            return _unpack(npz)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", default=str(DEFAULT_VENV))
    args = ap.parse_args(argv)
    python = ensure_venv(args.venv)
    code = "import imitation, gymnasium, torch; print(imitation.__version__, "
    code += "gymnasium.__version__, torch.__version__)"
    versions = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    print(f"imitation venv: {python}\nimitation, gymnasium, torch = {versions.stdout.strip()}")


if __name__ == "__main__":
    main()
