"""The per-step operations on the dynamics that every exact recursion is written with.

A backup, a forward message or an occupancy step touches P(s'|s,a) and r(s,a,s') only through
the few contractions below; each recursion is written once against them and runs on either
layout (a :class:`~pgm_control.TabularMDP` picks its own, ``mdp.dynamics``):

* :class:`DenseDynamics` — P and r as (S, A, S) tensors (the historic code, bit for bit);
* :class:`SparseDynamics` — padded successor lists indexed as [k, s, a] (K = the largest
  number of successors of any (s, a)): ``next_state[k, s, a]``, ``prob[k, s, a]``,
  ``reward[k, s, a]``; padding has prob 0. Cost per step ∝ K·S·A ≈ nnz, no (S, A, S) tensor.

The operations, with ``r`` the (already scaled) reward in the layout's own shape::

    mean(r)                  r̄(s,a)  = Σ_s' P(s'|s,a)·r(s,a,s')
    expect(v)                (S, A)   = Σ_s' P(s'|s,a)·v(s')            (0·(−inf) = 0)
    log_expect_tilted(r, v)  (S, A)   = log Σ_s' P(s'|s,a)·exp(r(s,a,s') + v(s'))
    max_tilted(r, v)         (S, A)   = max_{s': P>0} log P(s'|s,a) + r(s,a,s') + v(s')
    posterior_step(.., r, v) (Qₜ, p(s'|s,a,O)): log_expect_tilted and each s' share of it
    push(x)                  (S,)     = Σ_{s,a} x(s,a)·P(s'|s,a)      (push_with: other kernel)
    push_log(l, lp, r)       (S,)     = log Σ_{s,a} exp(l(s) + lp(s,a))·P(s'|s,a)·exp(r(s,a,s'))

Every operation is out of place, so autograd runs through it (in P's and r's values).
"""

from __future__ import annotations

import torch

__all__ = ["DenseDynamics", "SparseDynamics"]


def _safe_log(x: torch.Tensor) -> torch.Tensor:
    """log x with −inf where x = 0, whose gradient at the zeros is 0 instead of NaN."""
    positive = x > 0
    log_x = torch.log(torch.where(positive, x, torch.ones_like(x)))
    return torch.where(positive, log_x, -torch.inf)


def _underflow_threshold(dtype: torch.dtype) -> float:
    """Below this a row sum of the matvec may have lost relative precision to underflow.

    Each summand K·exp(v − max v) ≤ 1 that underflows loses at most ``tiny``; a total above
    tiny/eps² keeps S·eps² relative accuracy for any S < 1/eps. float64 keeps its historic
    1e-250 (above its tiny/eps² ≈ 4.5e-277, so the same criterion holds, bit for bit as
    before); float32 gets ≈ 8.3e-25 — a float64-only constant here made float32 return −inf.
    """
    if dtype == torch.float64:
        return 1e-250
    info = torch.finfo(dtype)
    return info.tiny / info.eps**2


def _finite_shift(x: torch.Tensor) -> torch.Tensor:
    """max x as a detached shift for a log-sum-exp, 0 where the max is ±inf."""
    m = x.detach().max()
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _times_gathered(kernel: torch.Tensor, v: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """kernel·v[index] for (K, S, A) ``kernel`` and ``index``: one flat index_select.

    Multiplied in place into the gathered buffer when no gradient is recorded (the hot path
    of the million-state runs); out of place otherwise, so autograd sees every factor.
    """
    gathered = v.index_select(0, index.reshape(-1)).view(index.shape)
    if _needs_grad(kernel, v):
        return kernel * gathered
    return gathered.mul_(kernel)


class DenseDynamics:
    """P[s, a, s'] and r[s, a, s'] as dense (S, A, S) tensors."""

    is_sparse = False

    def __init__(self, transition: torch.Tensor, reward: torch.Tensor, _flat=None):
        self.transition = transition
        self.reward = reward
        # P as (S·A, S'): a view of P made once and handed on by ``with_reward`` (inner loops
        # such as MaxEnt IRL's swap the reward at every evaluation), except for a P that
        # requires grad, whose flat view is taken afresh in each graph
        self._flat = _flat

    def to(self, dtype: torch.dtype) -> DenseDynamics:
        return DenseDynamics(self.transition.to(dtype), self.reward.to(dtype))

    def with_reward(self, reward: torch.Tensor) -> DenseDynamics:
        """The same P with a dense (S, A, S) reward (differentiable, not validated)."""
        return DenseDynamics(self.transition, reward, self._kept_view())

    def _kept_view(self) -> torch.Tensor | None:
        """The (S·A, S') view of a constant, contiguous P, made once; None for any other P
        (checked at each call: P may be made a leaf after the view was taken)."""
        if self.transition.requires_grad:
            return None
        if self._flat is None and self.transition.is_contiguous():
            self._flat = self.transition.flatten(0, 1)
        return self._flat

    @property
    def flat_transition(self) -> torch.Tensor:
        """P[s, a, s'] as an (S·A, S') matrix: the kept view, or a fresh one (a P that
        requires grad gets one in each graph)."""
        kept = self._kept_view()
        return self.transition.flatten(0, 1) if kept is None else kept

    def __getstate__(self):
        return {**self.__dict__, "_flat": None}  # a view: rebuilt on demand, not pickled twice

    @property
    def log_transition(self) -> torch.Tensor:
        return _safe_log(self.transition)

    def mean(self, r: torch.Tensor) -> torch.Tensor:
        return (self.transition * r).sum(-1)

    def expect(self, v: torch.Tensor, allow_neg_inf: bool = False) -> torch.Tensor:
        """Σ_s' P·v(s'), (S, A); with ``allow_neg_inf``, −inf where a −inf v is reachable."""
        S, A, _ = self.transition.shape
        P_flat = self.flat_transition  # (S·A, S')
        if not allow_neg_inf or not torch.isinf(v).any():
            return torch.mv(P_flat, v).view(S, A)  # the kernel `P_flat @ v` dispatches to
        finite = torch.isfinite(v)
        value = P_flat @ torch.where(finite, v, torch.zeros_like(v))
        doomed = ((P_flat > 0) & ~finite).any(-1)
        return torch.where(doomed, torch.full_like(value, -torch.inf), value).view(S, A)

    def tilt(self, r: torch.Tensor):
        """P·exp(r) split as K·exp(m): m(s,a) = max reachable r, so that 0 ≤ K ≤ 1."""
        P = self.transition
        reachable = P > 0
        m = torch.where(reachable, r, -torch.inf).amax(-1)
        shifted = torch.where(reachable, r - m[..., None], -torch.inf)
        return (P * torch.exp(shifted)).flatten(0, 1), m

    def log_expect_tilted(self, tilted, r: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """log Σ_s' P(s'|s,a)·exp(r + v(s')) as one stabilised (S·A, S) @ (S,) product.

        ``tilted`` is :meth:`tilt` of the same ``r``. Rows whose sum underflows (values
        spanning > ~500 nats in float64, ~50 in float32) are redone by an exact logsumexp; the
        log is taken only of rows that are kept, so a 0 row sum never gives a NaN gradient.
        """
        kernel, m = tilted
        v_max = v.max()
        total = (kernel @ torch.exp(v - v_max)).view_as(m)
        bad = total < _underflow_threshold(total.dtype)
        q = torch.log(torch.where(bad, torch.ones_like(total), total)) + m + v_max
        if bad.any():
            idx = bad.nonzero(as_tuple=True)
            log_P = self.log_transition
            q = q.index_put(idx, torch.logsumexp(log_P[idx] + r[idx] + v, dim=-1))
        return q

    def max_tilted(self, r: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (self.log_transition + r + v).amax(-1)  # log P = −inf off the support

    def posterior_step(self, tilted, r: torch.Tensor, v: torch.Tensor):
        """(Qₜ, p(s'|s,a,O) (S, A, S)): the optimistic backup and its posterior dynamics."""
        q = self.log_expect_tilted(tilted, r, v)
        logits = self.log_transition + r + v
        return q, torch.exp(logits - q[..., None])

    def push_with(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """Σ_{s,a} x(s,a)·kernel(s'|s,a) for a dense kernel (S, A, S)."""
        S, A, _ = kernel.shape
        return x.reshape(S * A) @ kernel.reshape(S * A, S)

    def push(self, x: torch.Tensor) -> torch.Tensor:
        S, A, _ = self.transition.shape
        return x.reshape(S * A) @ self.transition.reshape(S * A, S)

    def push_log(self, log_a: torch.Tensor, log_prior: torch.Tensor, r: torch.Tensor):
        log_kernel = log_prior[:, :, None] + self.log_transition
        joint = log_a[:, None, None] + log_kernel + r  # (S, A, S')
        return torch.logsumexp(joint.flatten(0, 1), dim=0)


class SparseDynamics:
    """Padded successor lists: ``next_state``, ``prob``, ``reward``, each indexed [k, s, a].

    Built by :class:`~pgm_control.TabularMDP` from a sparse COO ``transition``; padding slots
    (``valid`` False) have prob 0, reward 0 and point at state 0.
    """

    is_sparse = True

    def __init__(self, next_state, prob, reward, valid):
        self.next_state = next_state  # int64 (K, S, A)
        self.prob = prob
        self.reward = reward
        self.valid = valid  # bool (K, S, A): the slot holds a stored entry of P

    def to(self, dtype: torch.dtype) -> SparseDynamics:
        return SparseDynamics(
            self.next_state, self.prob.to(dtype), self.reward.to(dtype), self.valid
        )

    def with_reward(self, reward: torch.Tensor) -> SparseDynamics:
        """The same P with a dense (S, A, S) reward read on its successor lists (0 on padding;
        differentiable, not validated)."""
        K, S, A = self.next_state.shape
        s = torch.arange(S, device=reward.device)[None, :, None].expand(K, S, A)
        a = torch.arange(A, device=reward.device)[None, None, :].expand(K, S, A)
        r = reward[s, a, self.next_state]
        r = torch.where(self.valid, r, torch.zeros_like(r))
        return SparseDynamics(self.next_state, self.prob, r, self.valid)

    @property
    def num_states(self) -> int:
        return self.next_state.shape[1]

    @property
    def log_transition(self) -> torch.Tensor:
        """log P on the successor lists, (K, S, A), −inf on padding."""
        return _safe_log(self.prob)

    def mean(self, r: torch.Tensor) -> torch.Tensor:
        return (self.prob * r).sum(0)

    def expect(self, v: torch.Tensor, allow_neg_inf: bool = False) -> torch.Tensor:
        """Σ_k P_k·v(next_k), (S, A); with ``allow_neg_inf``, −inf where a −inf v is reachable."""
        if not allow_neg_inf or not torch.isinf(v).any():
            return _times_gathered(self.prob, v, self.next_state).sum(0)
        v_next = v[self.next_state]  # (K, S, A)
        on = self.prob > 0
        finite = torch.isfinite(v_next)
        value = (self.prob * torch.where(finite, v_next, torch.zeros_like(v_next))).sum(0)
        doomed = (on & ~finite).any(0)
        return torch.where(doomed, torch.full_like(value, -torch.inf), value)

    def tilt(self, r: torch.Tensor):
        """P·exp(r) on the successor lists, split as K·exp(m) with 0 ≤ K ≤ 1."""
        on = self.prob > 0
        m = torch.where(on, r, -torch.inf).amax(0)
        shifted = torch.where(on, r - m, -torch.inf)
        return self.prob * torch.exp(shifted), m

    def log_expect_tilted(self, tilted, r: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """log Σ_k P_k·exp(r_k + v(next_k)), (S, A): a gather per successor slot.

        The same stabilisation as the dense route: one global shift max v, the row maximum
        of r in ``tilted``, and an exact logsumexp for the rows whose sum underflows.
        """
        kernel, m = tilted
        v_max = v.max()
        total = _times_gathered(kernel, torch.exp(v - v_max), self.next_state).sum(0)
        bad = total < _underflow_threshold(total.dtype)
        q = torch.log(torch.where(bad, torch.ones_like(total), total)) + m + v_max
        if bad.any():
            idx = bad.nonzero(as_tuple=True)
            nxt = self.next_state[:, idx[0], idx[1]]  # (K, n_bad)
            logits = self.log_transition[:, idx[0], idx[1]] + r[:, idx[0], idx[1]] + v[nxt]
            q = q.index_put(idx, torch.logsumexp(logits, dim=0))
        return q

    def max_tilted(self, r: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (self.log_transition + r + v[self.next_state]).amax(0)  # padding: log P = −inf

    def posterior_step(self, tilted, r: torch.Tensor, v: torch.Tensor):
        """(Qₜ, p(s'|s,a,O)): the optimistic backup and its posterior dynamics in one pass.

        p(s'|s,a,O) = P·exp(r + v(s') − Qₜ(s,a)) is each successor's share of the backup's
        sum, (K, S, A) on the successor lists; underflowing rows by an exact softmax.
        """
        kernel, m = tilted
        v_max = v.max()
        terms = _times_gathered(kernel, torch.exp(v - v_max), self.next_state)  # (K, S, A)
        total = terms.sum(0)
        bad = total < _underflow_threshold(total.dtype)
        safe = torch.where(bad, torch.ones_like(total), total)
        q = torch.log(safe) + m + v_max
        share = terms.div_(safe) if not _needs_grad(terms, safe) else terms / safe
        if bad.any():
            idx = bad.nonzero(as_tuple=True)
            nxt = self.next_state[:, idx[0], idx[1]]
            logits = self.log_transition[:, idx[0], idx[1]] + r[:, idx[0], idx[1]] + v[nxt]
            q = q.index_put(idx, torch.logsumexp(logits, dim=0))
            rows = torch.softmax(logits, dim=0)
            share = share.index_put((slice(None), *idx), rows)
        return q, share

    def push_with(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """Σ_{s,a} x(s,a)·kernel(s'|s,a) for a kernel on the successor lists (K, S, A).

        ``kernel`` is a scratch buffer: overwritten when no gradient is recorded.
        """
        flat = (kernel * x if _needs_grad(kernel, x) else kernel.mul_(x)).reshape(-1)
        out = torch.zeros(self.num_states, dtype=flat.dtype, device=flat.device)
        return out.index_add(0, self.next_state.reshape(-1), flat)

    def push(self, x: torch.Tensor) -> torch.Tensor:
        """Σ_{s,a} x(s,a)·P(s'|s,a), (S,): one scatter-add over the non-zeros."""
        flat = (self.prob * x).reshape(-1)
        out = torch.zeros(self.num_states, dtype=flat.dtype, device=flat.device)
        return out.index_add(0, self.next_state.reshape(-1), flat)

    def push_log(self, log_a: torch.Tensor, log_prior: torch.Tensor, r: torch.Tensor):
        """log Σ_{s,a} exp(log_a(s) + log_prior(s,a))·P·exp(r), (S,), an exact log-sum-exp.

        Each target's shift is its own largest term (a scatter-max, detached: a shift moves
        no gradient), so nothing underflows that float can hold.
        """
        logits = (log_a[:, None] + log_prior) + self.log_transition + r  # (K, S, A)
        flat, target = logits.reshape(-1), self.next_state.reshape(-1)
        S = self.num_states
        shift = torch.full((S,), -torch.inf, dtype=flat.dtype, device=flat.device)
        shift = shift.scatter_reduce(0, target, flat.detach(), "amax")
        shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
        terms = torch.exp(flat - shift[target])
        total = torch.zeros(S, dtype=flat.dtype, device=flat.device).index_add(0, target, terms)
        return _safe_log(total) + shift


def _coo_keys(name: str, t: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Row-major keys (s·A + a)·S + s' of a COO (S, A, S) tensor, checked: in range, unique."""
    S, A, _ = shape
    idx = t._indices()
    bad = ((idx < 0) | (idx >= torch.tensor(shape, device=idx.device)[:, None])).any(0)
    if bad.any():
        j = int(bad.nonzero()[0])
        raise ValueError(
            f"`{name}` has an out-of-range index {tuple(idx[:, j].tolist())} for shape "
            f"(S, A, S) = {shape}; every (s, a, s') needs 0 <= s, s' < {S} and 0 <= a < {A}"
        )
    keys = (idx[0] * A + idx[1]) * S + idx[2]
    if keys.numel() > 1 and not bool((keys[1:] > keys[:-1]).all()):
        sorted_keys = torch.sort(keys).values
        same = sorted_keys[1:] == sorted_keys[:-1]
        if same.any():
            dup = int(sorted_keys[1:][same][0])
            raise ValueError(
                f"`{name}` lists the successor (s, a, s') = "
                f"{(dup // S // A, dup // S % A, dup % S)} more than once; give each "
                "(s, a, s') one entry (sum the probabilities of repeated outcomes first)"
            )
    return keys


def sparse_tables(transition, reward, dtype, device, check_values, sum_tolerance):
    """Validate a sparse COO ``transition`` (S, A, S) and its ``reward``; lay them out padded.

    Args:
        transition: torch sparse COO tensor, P[s, a, s'], rows summing to 1; no repeated or
            out-of-range index.
        reward: r(s, a) as a dense (S, A) tensor, or r(s, a, s') as a dense or sparse COO
            (S, A, S) tensor (its entries off P's support are never used).
        dtype, device: storage.
        check_values: ``check_values(name, values)`` raises on NaN/inf (the MDP's own check).
        sum_tolerance: ``sum_tolerance(dtype, n)``, how far a row of n entries may sum from 1.

    Returns:
        (transition, reward, dynamics): coalesced COO tensors on P's support (values in
        ``dtype``, differentiable in the inputs' values) and the :class:`SparseDynamics`.
    """
    if transition.ndim != 3 or transition.shape[0] != transition.shape[2]:
        raise ValueError(
            "`transition` must have shape (S, A, S) indexed as P[s, a, s'], "
            f"got {tuple(transition.shape)}"
        )
    shape = tuple(int(n) for n in transition.shape)
    S, A, _ = shape
    if S < 1 or A < 1:
        raise ValueError(f"`transition` needs at least one state and one action, got {shape}")
    transition = transition.to(device=device, dtype=dtype)
    keys = _coo_keys("transition", transition, shape)
    if not transition.is_coalesced():
        transition = transition.coalesce()
        keys = torch.sort(keys).values
    values = transition.values()
    check_values("transition", values)
    if (values < 0).any():
        raise ValueError("`transition` has a negative probability; P[s, a, :] must be >= 0")
    row = keys // S  # s·A + a
    sums = torch.zeros(S * A, dtype=dtype, device=device).index_add(0, row, values.detach())
    counts = torch.bincount(row, minlength=S * A)
    K = max(int(counts.max()), 1) if row.numel() else 1
    tol = sum_tolerance(dtype, K)
    err = (sums - 1).abs()
    if (err > tol).any():
        j = int((err > tol).nonzero()[0])
        raise ValueError(
            f"`transition` rows must sum to 1 over next states; row (s, a) = {(j // A, j % A)} "
            f"sums to {sums[j].item():.8g}. Normalise each row P[s, a, :] (a row with no "
            "entry sums to 0: every (s, a) needs at least one successor)."
        )
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(row.numel(), device=device) - start[row]
    where = (slot, row)
    next_state = torch.zeros(K, S * A, dtype=torch.long, device=device)
    next_state = next_state.index_put(where, keys % S).view(K, S, A)
    prob = torch.zeros(K, S * A, dtype=dtype, device=device).index_put(where, values)
    r_values = _reward_on_support(reward, keys, shape, dtype, device)
    check_values("reward", r_values)
    r_pad = torch.zeros(K, S * A, dtype=dtype, device=device).index_put(where, r_values)
    indices = transition.indices()
    P = torch.sparse_coo_tensor(indices, values, shape, is_coalesced=True, check_invariants=False)
    R = torch.sparse_coo_tensor(indices, r_values, shape, is_coalesced=True, check_invariants=False)
    valid = torch.zeros(K, S * A, dtype=torch.bool, device=device)
    valid = valid.index_put(where, torch.ones_like(row, dtype=torch.bool)).view(K, S, A)
    dyn = SparseDynamics(next_state, prob.view(K, S, A), r_pad.view(K, S, A), valid)
    return P, R, dyn


def _reward_on_support(reward, keys, shape, dtype, device) -> torch.Tensor:
    """r(s, a, s') at each non-zero of P (keys sorted), from an (S, A) or (S, A, S) reward."""
    S, A, _ = shape
    if not isinstance(reward, torch.Tensor):
        reward = torch.as_tensor(reward)
    reward = reward.to(device=device, dtype=dtype)
    s, a, s_next = keys // (A * S), keys // S % A, keys % S
    if reward.layout == torch.sparse_coo:
        if tuple(reward.shape) != shape:
            raise ValueError(
                f"a sparse `reward` must have shape (S, A, S) = {shape} like `transition`, "
                f"got {tuple(reward.shape)}"
            )
        r_keys = _coo_keys("reward", reward, shape)
        if not reward.is_coalesced():
            reward = reward.coalesce()
            r_keys = torch.sort(r_keys).values
        r_vals = reward.values()
        if r_keys.shape == keys.shape and torch.equal(r_keys, keys):  # the same support
            return r_vals
        if r_keys.numel() == 0:
            return torch.zeros(keys.shape, dtype=dtype, device=device)
        pos = torch.searchsorted(r_keys, keys).clamp(max=r_keys.numel() - 1)
        found = r_keys[pos] == keys
        return torch.where(found, r_vals[pos], torch.zeros_like(r_vals[pos]))
    if reward.shape == (S, A):
        return reward[s, a]
    if reward.shape == shape:
        return reward[s, a, s_next]
    raise ValueError(
        f"`reward` must have shape (S, A) = {(S, A)} or (S, A, S) = {shape} (dense or sparse "
        f"COO) to match `transition`, got {tuple(reward.shape)}"
    )
