"""The dense layout's (S·A, S') view of P: the same bits as the matvec it replaces, made once
per constant table, fresh for a P that requires grad, and never pickled."""

import pickle

import torch

from pgm_control.dynamics import DenseDynamics

F64 = torch.float64


def _tables(S=5, A=3, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    P = torch.softmax(2 * torch.randn(S, A, S, generator=g, dtype=dtype), -1)
    r = torch.randn(S, A, S, generator=g, dtype=dtype)
    v = torch.randn(S, generator=g, dtype=dtype)
    return P, r, v


def test_expect_is_the_flat_matvec_bit_for_bit_and_the_view_is_shared():
    for dtype in (torch.float32, F64):
        P, r, v = _tables(dtype=dtype)
        dyn = DenseDynamics(P, r)
        assert torch.equal(dyn.expect(v), (P.reshape(15, 5) @ v).view(5, 3))
        child = dyn.with_reward(2 * r)
        assert child.flat_transition is dyn.flat_transition  # made once, handed on
        assert child.flat_transition.data_ptr() == P.data_ptr()  # a view, not a copy
        assert torch.equal(child.expect(v), dyn.expect(v))


def test_a_non_contiguous_P_is_right_and_not_kept():
    P, r, v = _tables()
    P_t = P.transpose(0, 1).contiguous().transpose(0, 1)  # the same values, other strides
    dyn = DenseDynamics(P_t, r)
    torch.testing.assert_close(dyn.expect(v), torch.einsum("sax,x->sa", P, v), rtol=0, atol=1e-15)
    assert dyn._flat is None


def test_a_P_that_requires_grad_gets_a_fresh_view_and_its_gradient():
    P, r, v = _tables()
    logits = torch.log(P).requires_grad_()
    v = v.requires_grad_()

    def expect(logits, v):
        return DenseDynamics(torch.softmax(logits, -1), r).expect(v)

    assert torch.autograd.gradcheck(expect, (logits, v))
    leaf = P.clone().requires_grad_()
    dyn = DenseDynamics(leaf, r)
    for _ in range(2):  # twice on one object: no graph of an earlier call is kept
        (grad,) = torch.autograd.grad(dyn.expect(v.detach()).sum(), leaf)
        torch.testing.assert_close(grad, v.detach().expand(5, 3, 5), rtol=0, atol=0)
    assert dyn._flat is None and dyn.with_reward(r)._flat is None


def test_the_view_is_not_pickled():
    P, r, v = _tables(S=20)
    dyn = DenseDynamics(P, r)
    before = len(pickle.dumps(dyn))
    dyn.expect(v)
    assert dyn._flat is not None
    assert len(pickle.dumps(dyn)) == before
    back = pickle.loads(pickle.dumps(dyn))
    assert back._flat is None and torch.equal(back.expect(v), dyn.expect(v))


def test_a_kept_view_does_not_cut_the_gradient_of_a_P_made_a_leaf_later():
    """A view taken while P was a constant carries no graph: once the caller turns P into a
    leaf (``requires_grad_``), the expectation must take a fresh view, or ∂/∂P would be lost."""
    P, r, v = _tables()
    dyn = DenseDynamics(P, r)
    dyn.expect(v)
    assert dyn._flat is not None
    P.requires_grad_()
    (grad,) = torch.autograd.grad(dyn.expect(v).sum(), P)
    torch.testing.assert_close(grad, v.expand(5, 3, 5), rtol=0, atol=0)
    (grad,) = torch.autograd.grad(dyn.with_reward(r).expect(v).sum(), P)
    torch.testing.assert_close(grad, v.expand(5, 3, 5), rtol=0, atol=0)


def test_a_view_made_in_inference_mode_serves_autograd_in_the_value_later():
    """maxent_irl evaluates in inference mode, so the kept view of the caller's P is made
    there; a later differentiable use of the same MDP (gradient in V) must still work."""
    P, r, v = _tables()
    dyn = DenseDynamics(P, r)
    with torch.inference_mode():
        dyn.expect(v)
    v = v.clone().requires_grad_()
    (grad,) = torch.autograd.grad(dyn.expect(v).sum(), v)
    torch.testing.assert_close(grad, P.sum((0, 1)), rtol=0, atol=1e-15)
