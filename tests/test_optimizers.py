"""``LeanAdam``: torch's fused Adam update without the Optimizer wrapper, held bit for bit
against ``torch.optim.Adam(fused=True)``."""

import pytest
import torch

from pgm_control.optimizers import LeanAdam


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lean_adam_is_torch_fused_adam_bit_for_bit(dtype):
    """Two parameters of different shapes, 300 steps of changing gradients, one parameter
    without a gradient on some steps (it must keep its state, as torch's Adam skips it)."""
    g = torch.Generator().manual_seed(0)
    init = [torch.randn(7, dtype=dtype, generator=g), torch.randn(3, 2, dtype=dtype, generator=g)]
    ours = [x.clone().requires_grad_() for x in init]
    theirs = [x.clone().requires_grad_() for x in init]
    opt_ours, opt_theirs = LeanAdam(ours, 0.05), torch.optim.Adam(theirs, lr=0.05, fused=True)
    for k in range(300):
        for a, b in zip(ours, theirs):
            grad = torch.sin(a.detach() * (k + 1)) + 0.1 * k
            a.grad, b.grad = grad.clone(), grad.clone()
        if k % 7 == 3:
            ours[1].grad = theirs[1].grad = None
        opt_ours.step()
        opt_theirs.step()
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs)), k
    state = opt_theirs.state[theirs[1]]
    assert torch.equal(opt_ours.exp_avg_sqs[1], state["exp_avg_sq"])
    assert torch.equal(opt_ours.steps[1], state["step"])  # the skipped steps were not counted


def test_lean_adam_moves_against_the_gradient_and_clears_it():
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = LeanAdam([p], 0.1)
    p.grad = torch.tensor([1.0, -2.0, 0.0], dtype=torch.float64)
    opt.step()  # Adam's first step is lr·sign(grad) (up to eps)
    torch.testing.assert_close(p.detach(), torch.tensor([-0.1, 0.1, 0.0], dtype=torch.float64))
    opt.zero_grad()
    assert p.grad is None
    opt.step()  # no gradient: nothing moves, no error
    torch.testing.assert_close(p.detach(), torch.tensor([-0.1, 0.1, 0.0], dtype=torch.float64))


def test_lean_adam_refuses_what_fused_adam_cannot_take():
    with pytest.raises(TypeError, match="floating-point"):
        LeanAdam([torch.zeros(3, dtype=torch.int64)], 0.1)
    assert not LeanAdam.supports([torch.zeros(2, dtype=torch.complex64)])
    with pytest.raises(ValueError, match="lr"):
        LeanAdam([torch.zeros(3, requires_grad=True)], 0.0)
