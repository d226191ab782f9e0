"""Save and load: every object users keep round-trips through ``pickle`` and
``torch.save``/``torch.load(weights_only=False)`` and, reloaded in a *fresh process*, reproduces
its numbers bit for bit: MDP tables and the exact policy, the torch twins' dynamics / rewards /
state maps, an MPPI controller's next actions (its warm-start plan and random stream travel with
it), learned models' predictions and the importance-sampling result.

Independent route: the objects are rebuilt by nothing but unpickling in another interpreter, and
their outputs are compared with those of the originals by their bytes.
"""

import math
import pickle
import subprocess
import sys
import textwrap
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgm_control import envs
from pgm_control.importance import WeightDegeneracyWarning, importance_posterior
from pgm_control.learning import collect_transitions, fit_gaussian_dynamics, fit_tabular_model
from pgm_control.mdp import TabularMDP, random_mdp
from pgm_control.mppi import MPPI

F64 = torch.float64

# What the fresh process computes from each reloaded object; the test process computes the
# same with the originals. One function per kind of object, keyed by the object's name.
OUTPUTS = textwrap.dedent(
    """
    import types

    import numpy as np
    import torch

    from pgm_control.backward import soft_value_iteration

    def tabular(mdp):
        pi = soft_value_iteration(mdp, temperature=0.3).policy
        return [mdp.transition, mdp.reward, mdp.initial, pi]


    def continuous(mdp):
        g = torch.Generator().manual_seed(0)
        s = torch.randn(7, mdp.state_dim, dtype=mdp.dtype, generator=g) * 2
        a = torch.randn(7, mdp.action_dim, dtype=mdp.dtype, generator=g) * 2
        out = [mdp.action_low, mdp.action_high, mdp.reward(s, a)]
        nxt = mdp.dynamics(s, a)
        if isinstance(nxt, torch.distributions.Distribution):
            torch.manual_seed(1)
            out += [nxt.mean, nxt.sample()]
        else:
            out.append(nxt)
        if mdp.terminal_reward is not None:
            out.append(mdp.terminal_reward(s))
        if mdp.observe is not None:
            out.append(mdp.observe(s))
        if mdp.env_state is not None:
            out.append(torch.as_tensor(mdp.env_state(s[0])))
        if mdp.state_from_env is not None:
            unwrapped = types.SimpleNamespace(state=np.array([0.25, -0.5]))
            out.append(mdp.state_from_env(unwrapped))
        torch.manual_seed(2)
        out.append(mdp.initial.sample((5,)))
        return out


    def mppi(ctrl):
        s = torch.tensor([2.5, -0.5], dtype=torch.float64)
        return [ctrl.plan] + [ctrl.act(s) for _ in range(3)] + [ctrl.plan]


    def mppi_learned(ctrl):
        s = torch.tensor([-1.0, 0.1, 0.0], dtype=torch.float64)
        return [ctrl.act(s) for _ in range(2)]


    def sequence(items):
        return [torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
                for x in items if x is not None]


    def gaussian_fit(fit):
        g = torch.Generator().manual_seed(3)
        s = torch.randn(6, 3, dtype=torch.float64, generator=g)
        a = torch.randn(6, 1, dtype=torch.float64, generator=g)
        return list(fit.predict(s, a)) + [torch.as_tensor(fit.losses)]


    def importance(result):
        summary = torch.tensor([result.ess, result.log_evidence], dtype=torch.float64)
        return [result.log_weights, result.weights, result.actions, result.returns,
                result.plan, summary]
    """
)
OUTPUTS_NS: dict = {}
exec(OUTPUTS, OUTPUTS_NS)  # the same functions in this process

RELOAD = textwrap.dedent(
    """
    import pickle, sys, warnings
    import torch
    warnings.simplefilter("ignore")
    ns = {}
    exec(open(sys.argv[1]).read(), ns)
    kinds = pickle.load(open(sys.argv[2], "rb"))
    results = {}
    for name, kind in kinds.items():
        with open(sys.argv[3] + "/" + name + ".pkl", "rb") as f:
            by_pickle = pickle.load(f)
        by_torch = torch.load(sys.argv[3] + "/" + name + ".pt", weights_only=False)
        results[name] = [ns[kind](by_pickle), ns[kind](by_torch)]
    torch.save(results, sys.argv[4])
    """
)


def _as_bytes(outputs):
    """Each output tensor as (dtype, shape, bytes): equal only if bit for bit equal."""
    return [(t.dtype, tuple(t.shape), t.detach().cpu().contiguous().numpy().tobytes())
            for t in OUTPUTS_NS["sequence"](outputs)]  # fmt: skip


@pytest.fixture(scope="module")
def objects():
    """name -> (object, kind): everything a user keeps, in the state they keep it."""
    lake = gym.make("FrozenLake-v1")
    transitions = collect_transitions(lake, None, steps=400, seed=0, progress=False)
    pendulum_data = collect_transitions("Pendulum-v1", None, steps=300, seed=0, progress=False)
    fit = fit_gaussian_dynamics(pendulum_data, hidden=(8,), steps=5, seed=0, progress=False)
    controller = MPPI(
        envs.pendulum(), horizon=6, num_samples=32, temperature=0.5, noise_scale=1.0, seed=3,
        noise_correlation=0.8,
    )  # fmt: skip
    s = torch.tensor([math.pi, 0.0], dtype=F64)
    controller.act(s), controller.act(s)  # a warm-start plan and a used random stream
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeightDegeneracyWarning)
        result = importance_posterior(
            envs.pendulum(), s, horizon=5, num_samples=64, temperature=0.5, seed=1
        )
    learned_mdp = fit.to_mdp(6, action_low=-2.0, action_high=2.0)
    return {
        "frozen_lake": (TabularMDP.from_gymnasium(lake, 6), "tabular"),
        "random_mdp": (random_mdp(4, 3, 5, seed=0), "tabular"),
        "learned_lake": (fit_tabular_model(transitions, 16, 4, 6), "tabular"),
        "pendulum": (envs.pendulum(), "continuous"),
        "pendulum_terminal": (envs.pendulum(terminal_reward=True), "continuous"),
        "pendulum_float32": (envs.pendulum(dtype=torch.float32, g=9.81), "continuous"),
        "mountain_car": (envs.mountain_car_continuous(), "continuous"),
        "learned_pendulum": (learned_mdp, "continuous"),
        "learned_pendulum_stochastic": (
            fit.to_mdp(6, action_low=-2.0, action_high=2.0, stochastic=True),
            "continuous",
        ),
        "mppi": (controller, "mppi"),
        "mppi_learned": (
            MPPI(learned_mdp, horizon=6, num_samples=16, temperature=1.0, noise_scale=1.0),
            "mppi_learned",
        ),
        "transitions": (transitions, "sequence"),
        "pendulum_transitions": (pendulum_data, "sequence"),
        "gaussian_dynamics_fit": (fit, "gaussian_fit"),
        "importance_result": (result, "importance"),
    }


@pytest.mark.slow
def test_every_kept_object_reloads_in_a_fresh_process_bit_for_bit(objects, tmp_path):
    kinds = {name: kind for name, (_, kind) in objects.items()}
    for name, (obj, _) in objects.items():
        with open(tmp_path / f"{name}.pkl", "wb") as f:
            pickle.dump(obj, f)
        torch.save(obj, tmp_path / f"{name}.pt")
    (tmp_path / "outputs.py").write_text(OUTPUTS)
    with open(tmp_path / "kinds.pkl", "wb") as f:
        pickle.dump(kinds, f)
    (tmp_path / "reload.py").write_text(RELOAD)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "reload.py"), str(tmp_path / "outputs.py"),
         str(tmp_path / "kinds.pkl"), str(tmp_path), str(tmp_path / "results.pt")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    reloaded = torch.load(tmp_path / "results.pt", weights_only=False)
    # the originals after saving: stateful objects (MPPI) continue from the saved state
    for name, (obj, kind) in objects.items():
        expected = _as_bytes(OUTPUTS_NS[kind](obj))
        assert len(expected) > 0
        for route, outputs in zip(("pickle", "torch.save"), reloaded[name]):
            assert _as_bytes(outputs) == expected, f"{name} via {route} differs after reload"


def test_mppi_state_travels_with_the_controller():
    """In-process cross-check of the fresh-process test: a copy continues exactly as the
    original does, and the warm-start plan it carries matters (forgetting it changes them)."""
    ctrl = MPPI(envs.pendulum(), horizon=6, num_samples=32, temperature=0.5, noise_scale=1.0)
    s = torch.tensor([2.0, 0.3], dtype=F64)
    ctrl.act(s)
    copy, forgetful = pickle.loads(pickle.dumps(ctrl)), pickle.loads(pickle.dumps(ctrl))
    assert torch.equal(copy.plan, ctrl.plan)
    forgetful.reset()  # the same random stream, no plan
    ours = torch.stack([ctrl.act(s) for _ in range(3)])
    assert torch.equal(torch.stack([copy.act(s) for _ in range(3)]), ours)
    assert not torch.equal(torch.stack([forgetful.act(s) for _ in range(3)]), ours)


def test_builtin_twins_hold_no_closures():
    """The twins' callables are module-level functions or instances of module-level classes,
    which is what makes them pickle by reference."""
    for mdp in (envs.pendulum(), envs.pendulum(terminal_reward=True),
                envs.mountain_car_continuous()):  # fmt: skip
        for field in ("dynamics", "reward", "env_state", "observe", "state_from_env",
                      "terminal_reward"):  # fmt: skip
            fn = getattr(mdp, field)
            if fn is None:
                continue
            qualname = getattr(fn, "__qualname__", type(fn).__qualname__)
            assert "<locals>" not in qualname and "<lambda>" not in qualname, (field, qualname)
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(envs.pendulum())).env_state(torch.tensor([1.0, 2.0])),
        np.array([1.0, 2.0]),
    )
