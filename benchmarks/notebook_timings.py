"""Wall-clock time of every notebook at full settings, PASS/FAIL against a budget (90 s).

    python benchmarks/notebook_timings.py                    # notebooks/*.ipynb, full settings
    python benchmarks/notebook_timings.py "notebooks/0[7-9]*.ipynb" notebooks/10_*.ipynb
    python benchmarks/notebook_timings.py --smoke --output-dir docs/notebooks   # what CI runs

Each notebook runs in a fresh kernel (nbclient) from the ``notebooks/`` folder, top to
bottom; an error in any cell fails that notebook. ``--smoke`` sets ``CI=true``, so each
notebook's ``parameters`` cell picks its tiny settings (how CI executes them);
``--output-dir`` keeps the executed copies, with their outputs, for the documentation site
(``docs/build.py``). The three slowest cells of each notebook are listed, to show where the
time goes. Exit status 1 if a notebook fails or runs over ``--limit`` seconds.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import os
import pathlib
import re
import resource
import sys
import tempfile
import time

import nbclient
import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_GLOB = "notebooks/*.ipynb"


def _cell_seconds(cell) -> float:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    parse = datetime.datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished (reaped) kernels
    return usage.ru_utime + usage.ru_stime


def execute_notebook(path: pathlib.Path, *, smoke: bool, timeout: int, output_dir=None):
    """Run ``path`` in a fresh python3 kernel.

    Returns:
        (wall seconds, kernel CPU seconds, error or None, the three slowest cells as
        (index, seconds)). The CPU time (user + system of the kernel process) is the steadier
        number on a shared machine, where the wall time grows with the load.

    The environment variable ``CI`` is set when ``smoke`` and removed otherwise, so the
    notebook's ``parameters`` cell picks the settings asked for. The executed copy (outputs
    included, errors too) is written to ``output_dir / path.name`` when given.
    """
    nb = nbformat.read(path, as_version=4)
    env_before = {
        k: os.environ.get(k) for k in ("CI", "SMOKE_TEST", "MPLBACKEND", "XDG_RUNTIME_DIR")
    }
    if not os.environ.get("XDG_RUNTIME_DIR"):  # else SDL (gymnasium's rendering) prints an
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp()  # error into the rendered page
    os.environ.pop("SMOKE_TEST", None)
    if smoke:
        os.environ["CI"] = "true"
    else:
        os.environ.pop("CI", None)
    # figures become outputs (CI's MPLBACKEND=Agg would leave the rendered pages without them)
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    client = nbclient.NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    error = None
    cpu = _children_cpu()
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # no terminal colours
        error = text.splitlines()[-1] if text else repr(exc)
    except nbclient.exceptions.CellTimeoutError:
        error = f"a cell ran over the {timeout} s timeout"
    finally:
        seconds = time.perf_counter() - start
        cpu = _children_cpu() - cpu
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, output_dir / path.name)
    cells = [(i, _cell_seconds(c)) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    slow = sorted(cells, key=lambda ic: -ic[1])[:3]
    return seconds, cpu, error, slow


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "patterns",
        nargs="*",
        default=[DEFAULT_GLOB],
        help=f"notebook paths or globs (default: {DEFAULT_GLOB})",
    )
    parser.add_argument(
        "--limit",
        type=float,
        default=90.0,
        help="seconds allowed per notebook (default: %(default)s)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="CI's tiny settings (CI=true) instead of the full ones"
    )
    parser.add_argument(
        "--output-dir",
        type=pathlib.Path,
        default=None,
        help="write the executed notebooks (with outputs) here",
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=600,
        help="seconds per cell before a notebook fails (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    paths = sorted({pathlib.Path(p) for pat in args.patterns for p in glob.glob(pat)})
    if not paths:
        print(f"error: no notebook matches {' '.join(args.patterns)}", file=sys.stderr)
        return 1
    settings = "smoke (CI=true)" if args.smoke else "full"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{len(paths)} notebooks, {settings} settings, limit {args.limit:g} s each (wall); "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the start"
    )
    failed = 0
    for path in paths:
        seconds, cpu, error, slow = execute_notebook(
            path, smoke=args.smoke, timeout=args.timeout, output_dir=args.output_dir
        )
        ok = error is None and seconds < args.limit
        failed += not ok
        cells = ", ".join(f"cell {i}: {s:.1f} s" for i, s in slow if s > 0)
        verdict = "PASS" if ok else "FAIL"
        print(
            f"{verdict}  {path.name:36s} {seconds:6.1f} s wall  {cpu:6.1f} s CPU  "
            f"(slowest: {cells or 'n/a'})"
        )
        if error:
            print(f"      error: {error}")
    print(f"{len(paths) - failed}/{len(paths)} notebooks pass (< {args.limit:g} s, no error)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
