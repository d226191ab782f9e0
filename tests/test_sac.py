"""Soft actor-critic: its pieces against independent computations, its surface, and its
fixed point on the entropy-regularised LQR (the closed form of pgm_control.soft_lqr)."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from pgm_control.cli import main as cli_main
from pgm_control.guides.continuous import GaussianMLPGuide, OpenLoopNormalGuide
from pgm_control.sac import (
    SAC,
    actor_loss,
    critic_loss,
    observation_mdp,
    soft_bellman_target,
    temperature_loss,
)
from pgm_control.sac_critics import TwinQ, TwinQuadraticQ
from pgm_control.soft_lqr import LinearQuadraticEnv, compare_with_soft_lqr, soft_lqr

SMALL = dict(hidden=(16, 16), batch_size=32, learning_starts=50, buffer_size=500, progress=False)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_twin_q_is_two_independent_mlps():
    torch.manual_seed(0)
    q = TwinQ(3, 2, hidden=(8, 5), activation=nn.Tanh, dtype=torch.float64)
    s, a = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    out = q(s, a)
    assert out.shape == (2, 7)
    for i in range(2):
        x = torch.cat([s, a], -1)
        for k, (w, b) in enumerate(zip(q.weights, q.biases)):
            x = nn.functional.linear(x, w[i].T, b[i, 0])
            x = torch.tanh(x) if k < 2 else x
        torch.testing.assert_close(out[i], x[:, 0])
    # the actor's view: the same values, no gradient to the critic
    out_d = q(s, a.requires_grad_(), detach=True)
    out_d.sum().backward()
    assert all(p.grad is None for p in q.parameters()) and a.grad is not None


def test_twin_quadratic_q_is_two_independent_quadratics(tmp_path):
    """Qᵢ(s, a) = xᵀMᵢx + bᵢᵀx + cᵢ evaluated term by term in a loop, and the LQR's soft Q
    (−xᵀHx + q₀) is representable exactly."""
    torch.manual_seed(0)
    q = TwinQuadraticQ(2, 1, dtype=torch.float64)
    s, a = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
    out = q(s, a)
    assert out.shape == (2, 5)
    x = torch.cat([s, a], -1)
    for i in range(2):
        m = q.quadratic[i].detach()
        for k in range(5):
            value = sum(m[p, r] * x[k, p] * x[k, r] for p in range(3) for r in range(3))
            value = value + q.linear[i].detach() @ x[k] + q.constant[i].detach()
            assert out[i, k].item() == pytest.approx(value.item(), rel=1e-12)
    sol = soft_lqr(np.array([[1.0, 0.2], [0.0, 0.9]]), np.array([[0.0], [1.0]]), np.eye(2), 1.0,
                   temperature=0.5, discount=0.8, noise_covariance=0.02 * np.eye(2))  # fmt: skip
    with torch.no_grad():
        q.quadratic.copy_(-sol.H.expand(2, 3, 3))
        q.linear.zero_()
        q.constant.fill_(sol.q_constant.item())
    torch.testing.assert_close(q(s, a), sol.q_value(s, a).expand(2, 5))
    out = q(s, a.requires_grad_(), detach=True)
    out.sum().backward()
    assert all(p.grad is None for p in q.parameters()) and a.grad is not None
    with pytest.raises(ValueError, match="critic"):
        SAC("Pendulum-v1", critic="linear", **SMALL)
    # SAC builds it from critic="quadratic", and save/load keep it
    model = SAC("Pendulum-v1", critic="quadratic", learning_rate_final=1e-4, **SMALL)
    model.learn(60)
    model.save(tmp_path / "q.pt")
    loaded = SAC.load(tmp_path / "q.pt")
    assert isinstance(loaded.critic, TwinQuadraticQ) and loaded.learning_rate_final == 1e-4
    assert torch.equal(_params(loaded.critic), _params(model.critic))


def test_learning_rate_anneals_linearly_over_each_learn_call():
    model = SAC("Pendulum-v1", learning_rate=1e-3, learning_rate_final=1e-4, seed=0,
                **{**SMALL, "learning_starts": 10})  # fmt: skip
    model.learn(60)
    # the last update ran at env step 60 of 60: the final step
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    model.learn(40)  # a new call restarts the anneal
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    model._schedule = (model.num_timesteps, 40)
    model._update(model.buffer.sample(32, model.torch_generator))  # 0 of 40 steps done
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="learning_rate_final"):
        SAC("Pendulum-v1", learning_rate_final=0.0, **SMALL)


def test_losses_on_a_fixed_batch():
    r, term = torch.tensor([1.0, -2.0]), torch.tensor([0.0, 1.0])
    next_q = torch.tensor([[3.0, 5.0], [4.0, 1.0]])
    next_log_q = torch.tensor([-1.0, 0.5])
    y = soft_bellman_target(r, term, next_q, next_log_q, temperature=0.5, discount=0.9)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * (3.0 + 0.5), -2.0]))
    q = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    assert critic_loss(q, y).item() == pytest.approx(
        0.5 * np.mean((np.array([1.0, 2.0]) - y.numpy()) ** 2) + 0.5 * np.mean(y.numpy() ** 2)
    )
    log_q = torch.tensor([0.3, -0.7])
    assert actor_loss(q, log_q, 2.0).item() == pytest.approx(np.mean([0.6 - 0.0, -1.4 - 0.0]))
    log_alpha = torch.tensor(0.2, requires_grad=True)
    temperature_loss(log_alpha, log_q, target_entropy=-1.0).backward()
    # d/dlogα of −logα·(log q + H̄) averaged: −mean(log q − 1)
    assert log_alpha.grad.item() == pytest.approx(-np.mean([0.3 - 1.0, -0.7 - 1.0]))


def test_rsample_with_log_prob_matches_the_atanh_route_and_the_generator():
    spec = observation_mdp(
        gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 1.0]))
    )
    guide = GaussianMLPGuide(spec, init_scale=0.5)
    q = guide.policies()(0, torch.randn(64, 3))
    a, log_q = q.rsample_with_log_prob(generator=torch.Generator().manual_seed(1))
    a2, _ = q.rsample_with_log_prob(generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, a2) and a.shape == (64, 2) and log_q.shape == (64,)
    assert (a > q.low).all() and (a < q.high).all()
    fresh = a.detach().clone()  # not the cached draw: log_prob maps back through atanh
    torch.testing.assert_close(log_q, q.log_prob(fresh), rtol=1e-4, atol=1e-4)


def test_errors_name_the_argument():
    with pytest.raises(TypeError, match="SoftDQN"):
        SAC("CartPole-v1", **SMALL)
    with pytest.raises(ValueError, match="unbounded"):
        SAC(LinearQuadraticEnv(action_bound=np.inf), **SMALL)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            SAC("Pendulum-v1", temperature=bad, **SMALL)
    with pytest.raises(ValueError, match="`buffer_size`=16 is smaller than `batch_size`=32"):
        SAC("Pendulum-v1", **{**SMALL, "buffer_size": 16})
    with pytest.raises(ValueError, match="discount"):
        SAC("Pendulum-v1", discount=1.5, **SMALL)
    with pytest.raises(TypeError, match="open-loop"):
        spec = observation_mdp(gym.make("Pendulum-v1").observation_space,
                               gym.make("Pendulum-v1").action_space)  # fmt: skip
        SAC("Pendulum-v1", actor=OpenLoopNormalGuide(spec), **SMALL)
    with pytest.raises(ValueError, match="total_timesteps"):
        SAC("Pendulum-v1", **SMALL).learn(0)
    with pytest.raises(ValueError, match="warmup_bound"):
        SAC("Pendulum-v1", warmup_bound=0.0, **SMALL)


def test_warmup_bound_narrows_the_uniform_warm_up_about_the_box_centre():
    """Pendulum's box is ±2: warm-up actions fill ±0.5 with warmup_bound=0.5 (and the whole
    box without it); a bound wider than the box is clipped to it."""
    narrow = SAC("Pendulum-v1", warmup_bound=0.5, **SMALL)
    narrow.learn(50)
    a = narrow.buffer.actions[:50]
    assert a.abs().max() <= 0.5 and a.abs().max() > 0.4 and a.min() < 0 < a.max()
    full = SAC("Pendulum-v1", **SMALL)
    full.learn(50)
    assert full.buffer.actions[:50].abs().max() > 1.5
    wide = SAC("Pendulum-v1", warmup_bound=10.0, **SMALL)
    assert (wide._warmup_low == -2).all() and (wide._warmup_high == 2).all()


def test_seeded_runs_reproduce_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    runs = []
    for _ in range(2):
        model = SAC("Pendulum-v1", seed=7, **SMALL)
        model.learn(150)
        runs.append(model)
    assert torch.equal(_params(runs[0].actor), _params(runs[1].actor))
    assert torch.equal(_params(runs[0].critic), _params(runs[1].critic))
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    other = SAC("Pendulum-v1", seed=8, **SMALL)
    other.learn(150)
    assert not torch.equal(_params(other.actor), _params(runs[0].actor))
    assert runs[0].history.losses["critic"] and runs[0].history.losses["temperature"]


def test_predict_is_the_squashed_mean_and_the_actor_is_the_guide():
    model = SAC("Pendulum-v1", seed=0, **SMALL)
    model.learn(80)
    assert isinstance(model.actor, GaussianMLPGuide) and model.actor.family == "gaussian_mlp"
    obs = np.array([0.6, 0.8, -0.3], dtype=np.float32)
    action, state = model.predict(obs, deterministic=True)
    assert state is None and action.shape == (1,) and action.dtype == np.float32
    out = model.actor.net(torch.as_tensor(obs))
    assert action[0] == pytest.approx(2.0 * math.tanh(out[0].item()), rel=1e-5)
    assert model.actor.act(torch.as_tensor(obs)).item() == pytest.approx(action[0], rel=1e-6)
    draws = {float(model.predict(obs)[0][0]) for _ in range(5)}
    assert len(draws) == 5  # stochastic by default, as SB3


def test_save_load_continues_exactly(tmp_path):
    model = SAC("Pendulum-v1", seed=3, temperature=0.2, **SMALL)
    model.learn(120)
    path = tmp_path / "sac.pt"
    model.save(path)
    loaded = SAC.load(path)
    assert loaded.temperature == pytest.approx(0.2) and not loaded.auto_temperature
    assert torch.equal(_params(loaded.actor), _params(model.actor))
    assert len(loaded.buffer) == len(model.buffer) == 120
    for m in (model, loaded):
        m._obs = None  # both start a fresh episode (an env cannot be saved mid-episode)
        m.learn(60)
    assert torch.equal(_params(loaded.critic), _params(model.critic))


def test_cli_sac_runs_and_plots(tmp_path, capsys):
    png = tmp_path / "curve.png"
    argv = ["sac", "--steps", "120", "--hidden", "16", "--eval-episodes", "1", "--plot",
            str(png), "--no-progress", "--save", str(tmp_path / "m.pt"),
            "--noise-correlation", "0.5"]  # fmt: skip
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "deterministic return over 1 episodes" in out and png.exists()
    loaded = SAC.load(tmp_path / "m.pt")
    assert loaded.num_timesteps == 120 and loaded.noise_correlation == 0.5
    with pytest.raises(SystemExit):
        cli_main(["sac", "--temperature", "-1", "--steps", "10"])
    with pytest.raises(SystemExit):
        cli_main(["sac", "--noise-correlation", "1.5", "--steps", "10"])
    assert "noise_correlation" in capsys.readouterr().err


def _lq_solution():
    return soft_lqr(0.8, 1.0, 1.0, 1.0, temperature=0.5, discount=0.8, noise_covariance=0.05)


def test_soft_bellman_target_is_unbiased_at_the_closed_form_fixed_point():
    """With the exact soft Q and policy plugged in, E[y | s, a] = Q(s, a): the critic loss's
    regression target has the closed form as its fixed point (sampled s', a')."""
    sol, gen = _lq_solution(), torch.Generator().manual_seed(0)
    m, n = 16, 20_000
    s = torch.empty(m, 1, 1, dtype=torch.float64).uniform_(-1.5, 1.5, generator=gen)
    a = sol.gain.item() * s + torch.empty_like(s).uniform_(-1, 1, generator=gen)
    noise = torch.randn(m, n, 1, generator=gen, dtype=torch.float64) * math.sqrt(0.05)
    s_next = 0.8 * s + a + noise
    pi = sol.policy(s_next)
    a_next = pi.sample()
    q_next = sol.q_value(s_next, a_next)
    r = -(s**2 + a**2)[..., 0].expand(m, n)
    y = soft_bellman_target(r, torch.zeros(m, n, dtype=torch.float64),
                            torch.stack([q_next, q_next]), pi.log_prob(a_next),
                            temperature=0.5, discount=0.8)  # fmt: skip
    stderr = y.std(1) / math.sqrt(n)
    exact = sol.q_value(s[:, 0], a[:, 0])
    assert ((y.mean(1) - exact).abs() < 4 * stderr + 1e-3).all()


def test_actor_loss_is_stationary_at_the_closed_form_policy():
    """∇ of the reparameterised actor loss w.r.t. the Gaussian's (K, log σ) vanishes at the
    closed-form (K, Σ) and not at a perturbed policy (common random numbers)."""
    sol = _lq_solution()
    gen = torch.Generator().manual_seed(1)
    s = torch.empty(200_000, 1, dtype=torch.float64).uniform_(-1.5, 1.5, generator=gen)
    eps = torch.randn(200_000, 1, generator=gen, dtype=torch.float64)

    def grad(gain, log_sigma):
        k = torch.tensor(gain, dtype=torch.float64, requires_grad=True)
        ls = torch.tensor(log_sigma, dtype=torch.float64, requires_grad=True)
        a = k * s + ls.exp() * eps
        log_q = (-0.5 * eps**2 - ls - 0.5 * math.log(2 * math.pi))[:, 0]
        q = sol.q_value(s, a)
        actor_loss(torch.stack([q, q]), log_q, 0.5).backward()
        return abs(k.grad.item()), abs(ls.grad.item())

    k0, ls0 = sol.gain.item(), 0.5 * math.log(sol.covariance.item())
    at_optimum = grad(k0, ls0)
    assert max(at_optimum) < 1e-2
    assert grad(1.2 * k0, ls0)[0] > 10 * at_optimum[0]
    assert grad(k0, ls0 + 0.2)[1] > 10 * at_optimum[1]


# the two linear–quadratic problems SAC is held to (α = 0.5, γ = 0.8): a 1-D one, and a
# coupled stable 2-D one whose one action drives both states (a 1-D action, because the
# gaussian_mlp guide is diagonal and the closed form's Σ would not be for 2-D actions)
LQ_1D = dict(A=0.8, B=1.0, Q=1.0, R=1.0, noise_covariance=0.05)
LQ_2D = dict(A=[[0.8, 0.4], [0.0, 0.7]], B=[[0.5], [1.0]], Q=np.eye(2), R=1.0,
             noise_covariance=0.05 * np.eye(2))  # fmt: skip
# SAC as tested against them: the closed form's α (fixed) and γ, the env's noise W, truncation
# bootstrapped; an action box of ±10, so that the tanh squashing is negligible where the data go
# (|a| ≤ 3.2, tanh(0.32)/0.32 = 0.97; |a| ≤ 1.4 for 99% of them); the quadratic critic (the
# family of the exact soft Q); 2000 warm-up steps of uniform actions in ±1.5 (decorrelated from
# the states: H_aa and H_as are identified; a narrow warm-up keeps the states within |s| ≲ 3);
# the critic alone until env step 2200 (the actor then starts from a fitted critic instead of
# chasing a random one to the box's edge); σ_a ≈ 1 at the start (init_scale 0.1 of h = 10);
# 24000 env steps, one update of a batch of 512 every 6 (env steps are cheap, updates are not:
# the data's noise, not the updates, sets the critic's error floor); Adam's step annealed
# 1e-2 → 1e-4 with β₂ = 0.99 (0.999 needed ~5000 updates to bring the critic's constant to its
# fixed point); τ = 0.1
LQ_SAC = dict(temperature=0.5, discount=0.8, critic="quadratic", hidden=(32, 32),
              learning_rate=1e-2, learning_rate_final=1e-4,
              optimizer_kwargs={"betas": (0.9, 0.99)}, tau=0.1, batch_size=512,
              train_freq=6, gradient_steps=1, learning_starts=2000, warmup_bound=1.5,
              actor_learning_starts=2200, actor_kwargs={"init_scale": 0.1},
              progress=False)  # fmt: skip
LQ_STEPS = 24_000


def _sac_on_lq(problem, steps, seed, **options):
    exact = soft_lqr(**problem, temperature=0.5, discount=0.8)
    env = LinearQuadraticEnv(
        problem["A"], problem["B"], problem["Q"], problem["R"], problem["noise_covariance"],
        action_bound=10.0, initial_bound=2.0, max_episode_steps=10,
    )  # fmt: skip
    model = SAC(env, seed=seed, **{**LQ_SAC, **options})
    model.learn(steps)
    return model, exact


def _compare(model, exact, grid_points):
    """SAC read against the closed form (pgm_control.soft_lqr.compare_with_soft_lqr): the
    actor on the visited states (the replay buffer's), 400 actions per state in the env's
    units; the critic is SAC's own estimate minᵢ Q̄ᵢ of the Polyak-averaged target critics."""
    gen = torch.Generator().manual_seed(0)
    states = model.buffer.observations[: len(model.buffer)]

    def sample(s):
        return model.policy(s.float()).rsample_with_log_prob((400,), generator=gen)[0]

    def critic(s, a):
        return model.critic_target(s.float(), a.float()).min(0).values

    r = compare_with_soft_lqr(exact, states, sample, critic, grid_points=grid_points)
    covered = states.abs().quantile(0.99, dim=0)
    print(f"\ngain {r.gain.flatten().tolist()} vs {exact.gain.flatten().tolist()} "
          f"({r.gain_error:.1%}), offset {r.offset.tolist()}; covariance "
          f"{r.covariance.flatten().tolist()} vs {exact.covariance.flatten().tolist()} "
          f"({r.covariance_error:.1%}); critic max per-point rel. error {r.critic_error:.1%} "
          f"(max |err| / max |Q*|: {r.critic_error_of_max:.1%}); states' 99% |s| "
          f"{covered.tolist()}")  # fmt: skip
    # the grid lies inside the data, and Q* ≤ q₀ < 0 there (the per-point error is meaningful)
    assert (covered >= 1.5).all() and exact.q_constant < 0
    return r


@pytest.mark.slow
@pytest.mark.parametrize("problem, grid_points", [("1d", 7), ("2d", 5)])
def test_sac_on_the_lq_problems_matches_the_closed_form(problem, grid_points):
    """SAC's actor gain and covariance, and its critic on a grid of (s, a), against
    pgm_control.soft_lqr's soft Riccati solution (read as in _compare), to the issue's
    acceptance: gain 5%, covariance 10%, critic 5% per grid point, on the 1-D problem and the
    coupled 2-D one (gain 1×2, covariance 1×1).

    Seeds 0, 1, 2 measured, 1-D: gain 0.1 / 0.8 / 0.3%, covariance 0.5 / 0.7 / 1.1%, critic
    0.6 / 4.1 / 0.8%; 2-D: gain 2.0 / 0.2 / 0.8%, covariance 0.8 / 0.8 / 0.0%, critic 2.0 /
    2.6 / 2.6% (README, "The exact check"). What is left of the critic's error is the data's
    noise: a least-squares (LSTD) fit of the exact policy's soft Q to the same buffer is off by
    as much (1-D seed 1: its constant −0.518 against −0.539)."""
    model, exact = _sac_on_lq({"1d": LQ_1D, "2d": LQ_2D}[problem], LQ_STEPS, seed=0)
    r = _compare(model, exact, grid_points=grid_points)
    assert r.gain_error <= 0.05
    assert r.covariance_error <= 0.10
    assert r.critic_error <= 0.05
    # the action box is wide enough that the tanh squashing is negligible on the data
    assert model.buffer.actions[: len(model.buffer)].abs().max() <= 0.4 * 10.0


def test_actor_learning_starts_holds_the_actor_while_the_critic_learns():
    """Before actor_learning_starts only the critic steps: the actor's weights (and Adam's
    moments for them) stay as initialised, then move; it may not precede learning_starts."""
    env = LinearQuadraticEnv(action_bound=10.0)
    model = SAC(env, actor_learning_starts=90, seed=0,
                **{**SMALL, "learning_starts": 40})  # fmt: skip
    actor0, critic0 = _params(model.actor), _params(model.critic)
    model.learn(80)
    assert model._updates == 41 and not torch.equal(_params(model.critic), critic0)
    assert torch.equal(_params(model.actor), actor0)
    assert all(p not in model.optimizer.state for p in model.actor.parameters())
    model.learn(20)
    assert not torch.equal(_params(model.actor), actor0)
    with pytest.raises(ValueError, match="actor_learning_starts"):
        SAC(env, actor_learning_starts=10, **{**SMALL, "learning_starts": 40})


def test_optimizer_kwargs_reach_adam_and_survive_save_load(tmp_path):
    model = SAC("Pendulum-v1", optimizer_kwargs={"betas": (0.9, 0.99)}, **SMALL)
    assert model.optimizer.param_groups[0]["betas"] == (0.9, 0.99)
    model.learn(60)
    model.save(tmp_path / "m.pt")
    loaded = SAC.load(tmp_path / "m.pt")
    assert loaded.optimizer.param_groups[0]["betas"] == (0.9, 0.99)
    with pytest.raises(ValueError, match="optimizer_kwargs"):
        SAC("Pendulum-v1", optimizer_kwargs={"lr": 1.0}, **SMALL)


def test_vectorised_collection_keeps_the_true_successor():
    env = gym.make("Pendulum-v1", max_episode_steps=5)
    model = SAC(env, num_envs=3, seed=0, **{**SMALL, "learning_starts": 30})
    model.learn(30)
    assert model.num_timesteps == 30 and len(model.buffer) == 30
    assert model.history.episode_lengths == [5] * 6 and model._updates > 0
    b, n = model.buffer, 3
    for t in range(9):
        for i in range(n):
            cur, nxt = t * n + i, (t + 1) * n + i
            same = torch.equal(b.next_observations[cur], b.observations[nxt])
            assert same == ((t + 1) % 5 != 0)  # s' is the next s except across a reset
    with pytest.raises(ValueError, match="num_envs"):
        SAC(LinearQuadraticEnv(), num_envs=2, **SMALL)
