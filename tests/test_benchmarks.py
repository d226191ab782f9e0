"""The benchmark scripts run end to end on tiny settings and print their side-by-side tables.

Their verdicts need full settings (minutes each; the README quotes full runs), so here a FAIL
on tiny settings is expected; what must hold is that each script runs, prints every row of its
table and a verdict per target, and exits 0 (all pass) or 1 (some fail), never crashing.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocess runs of every benchmark script (~40 s); CI runs them

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "exact_messages.py": (
        "--quick --horizon 10 --enum-horizon 10 --threads 1",
        ["Taxi-v4", "FrozenLake-v1 8x8 slippery"],
    ),
    "svi_convergence.py": ("--quick", ["targets passed", "rao_blackwell"]),
    "fit_defaults.py": (
        "--smoke",
        ["Monte-Carlo defaults", "gap ≤ 1e-3 in ≤ 15 s", "worst relative gap ≤ 1e-9", "overall:"],
    ),
    "pendulum_svi.py": ("--smoke", ["fast form", "smoke run: no verdict"]),
    "mppi_pendulum.py": (
        "--seeds 1 --steps 3 --samples 16 --horizon 5 --threads 1 --mc-seeds 1 "
        "--mc-samples 16 --mc-horizon 5",
        [
            "pgm_control MPPI:",
            "pgm_control MPPI, white noise:",
            "pytorch_mppi:",
            "ms/step <=",
            "MountainCarContinuous-v0",
            "every return > 90",
            "overall:",
        ],
    ),  # fmt: skip
    "mppi_pendulum.py --sweep": (
        "--sweep --sweep-seeds 2 --sweep-rho 0 0.9 --steps 3 --samples 16 --horizon 5",
        ["ρ = 0:", "ρ = 0.9:", "ρ = 0, K = 64:", "ρ = 0, terminal reward"],
    ),
    "maxent_irl_slippery.py": (  # T = 100, one seed, both estimators; must PASS
        "--smoke",
        [
            "T = 100: expert P(goal at T) = 0.4886",
            "features  KL",
            "causal    KL",
            "information equality",
            "overall: PASS",
        ],
    ),  # fmt: skip
    "model_based.py": (
        "--fl-data-seeds 1 --fl-episodes 50 --fl-steps 2000 --seeds 1 --pendulum-steps 300 "
        "--fit-steps 10 --samples 16 --plan-horizon 5",
        [
            "exploring starts",
            "random walk from the env's reset state",
            "data seed 0",
            "every data set within 2 points",
            "MPPI in p̂",
            "every return >= -450",
            "overall:",
        ],
    ),  # fmt: skip
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_runs_on_tiny_settings(script, tmp_path):
    args, expected = CASES[script]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script.split()[0]), *args.split()],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode in (0, 1), f"{script} crashed:\n{proc.stderr[-3000:]}"
    for text in expected:
        assert text in out, f"{script}: {text!r} missing from its output:\n{out[-3000:]}"
    if "overall:" in out:  # the exit code is the verdict
        assert ("overall: PASS" in out) == (proc.returncode == 0)
    assert "Traceback" not in proc.stderr


def test_what_type_of_inference_benchmark_smoke(tmp_path):
    """benchmarks/what_type_of_inference.py --smoke: every table and verdict, exit 0 or 1."""
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "what_type_of_inference.py"), "--smoke"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    for text in ("planning is optimal", "the lottery", "Taxi-v4", "equal to 1e-10", "overall:"):
        assert text in proc.stdout, proc.stdout[-3000:]
    assert ("overall: PASS" in proc.stdout) == (proc.returncode == 0)


def test_exact_messages_scaling_and_peer_sections_smoke(tmp_path):
    """Sparse dynamics at scale (issue 13): the scaling table's rows in fresh processes and
    the imitation section, which --quick never runs (no imitation venv needed)."""
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    args = "--quick --sections imitation,scaling --sizes 100 --horizon 10 --threads 1"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "exact_messages.py"), *args.split()],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "imitation: skipped (--quick never runs the peer venv)" in out
    assert "gridworld scaling, T=10" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == ["100"]]
    assert [(r[0], r[2]) for r in rows] == [("100", "float64"), ("100", "float32")]
    assert out.count("float32 speed-up") == 1


def test_maxent_irl_benchmark_smoke_without_the_peer(tmp_path):
    """benchmarks/maxent_irl.py --smoke --no-peer: our side only, no imitation venv needed."""
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    script = ROOT / "benchmarks" / "maxent_irl.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--smoke", "--no-peer"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expected = ["CliffWorld 7x4 (S = 28, T = 8)", "random MDP, 8 features (S = 100", "overall:"]
    for text in expected:
        assert text in proc.stdout, proc.stdout
    assert "overall: PASS" in proc.stdout


# learning from samples (issue 10): soft Q-learning and the soft policy gradient
LEARNING_CASES = {
    "soft_q_learning.py": ("--smoke", ["CliffWalking-v1", "FrozenLake-v1", "overall:"]),
    "soft_policy_gradient.py": ("--smoke", ["occupancy-weighted KL", "overall:"]),
}


@pytest.mark.parametrize("script", sorted(LEARNING_CASES))
def test_learning_benchmark_runs_on_tiny_settings(script, tmp_path, monkeypatch):
    monkeypatch.setitem(CASES, script, LEARNING_CASES[script])
    test_benchmark_runs_on_tiny_settings(script, tmp_path)


# soft DQN vs SB3's DQN and AWR on CartPole (issue 10): smoke settings, no verdict
@pytest.mark.parametrize(
    "script, expected",
    [
        ("soft_dqn_cartpole.py", ["seed 0 SB3 DQN", "seed 0 soft DQN", "mean soft DQN"]),
        ("awr_cartpole.py", ["seed 0: steps to 475:"]),
    ],
)
def test_cartpole_learners_run_on_smoke_settings(script, expected, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"{script} crashed:\n{proc.stderr[-3000:]}"
    for text in [*expected, "smoke run: no verdict"]:
        assert text in proc.stdout, f"{script}: {text!r} missing:\n{proc.stdout[-3000:]}"


def test_sac_benchmark_smoke(tmp_path):
    """benchmarks/sac.py --smoke: both libraries side by side on tiny settings (issue 11)."""
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sac.py"), "--smoke"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in ("ours  seed 0", "sb3   seed 0", "ratio", "return", "time"):
        assert text in proc.stdout, proc.stdout[-3000:]
    assert "Traceback" not in proc.stderr


def test_notebook_timings_pass_fail_and_the_executed_copies(tmp_path):
    """benchmarks/notebook_timings.py on two hand-made notebooks: one runs (and sees CI=true
    under --smoke), one raises; the verdicts, the exit status and the executed copies."""
    nbformat = pytest.importorskip("nbformat")
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for name, code in (
        ("a_ok.ipynb", "import os\nprint('smoke' if os.environ.get('CI') else 'full')"),
        ("b_bad.ipynb", "raise ValueError('boom')"),
    ):
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": kernelspec})
        nb.cells = [nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, tmp_path / name)
    out_dir = tmp_path / "executed"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("CI", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "notebook_timings.py"),
         str(tmp_path / "*.ipynb"), "--smoke", "--output-dir", str(out_dir)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr[-2000:]
    line = next(x for x in out.splitlines() if "a_ok.ipynb" in x)
    assert line.startswith("PASS") and "s wall" in line and "s CPU" in line, out
    assert "FAIL  b_bad.ipynb" in out and "error: ValueError: boom" in out, out
    assert "1/2 notebooks pass" in out
    executed = nbformat.read(out_dir / "a_ok.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "smoke\n"  # --smoke set CI for the kernel
