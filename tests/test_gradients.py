"""Gradients of every query are exact (``torch.autograd.gradcheck`` in float64)."""

from contextlib import contextmanager

import pytest
import torch
from torch.autograd import gradcheck

import circuitkg as ckg

QUERIES = {
    "log_partition": lambda c: c.log_partition(),
    "log_prob": lambda c: c.log_prob(torch.tensor([[0, 1, 2], [2, 0, 1]])),
    "log_marginal": lambda c: c.log_marginal(s=torch.tensor([0, 2]), r=torch.tensor([1, 0])),
    "log_marginal_s": lambda c: c.log_marginal(s=torch.tensor([0, 2])),
    "log_conditional": lambda c: c.log_conditional(
        "o", s=torch.tensor([0, 2]), r=torch.tensor([1, 0])
    ),
    "log_conditional_of": lambda c: c.log_conditional_of(
        "o", torch.tensor([2, 1]), s=torch.tensor([0, 2]), r=torch.tensor([1, 0])
    ),
}


@contextmanager
def parameters_replaced(module: torch.nn.Module, values: tuple[torch.Tensor, ...]):
    """Temporarily make ``values`` the module's parameters (in ``named_parameters`` order)."""
    slots = []
    for name, _ in module.named_parameters():
        owner_name, _, attr = name.rpartition(".")
        slots.append((module.get_submodule(owner_name), attr))
    originals = [owner._parameters[attr] for owner, attr in slots]
    try:
        for (owner, attr), value in zip(slots, values, strict=True):
            owner._parameters[attr] = value
        yield
    finally:
        for (owner, attr), value in zip(slots, originals, strict=True):
            owner._parameters[attr] = value


@pytest.mark.parametrize("name", ["cp", "complex", "tucker", "rescal"])
@pytest.mark.parametrize("form", ["squared", "monotone"])
@pytest.mark.parametrize("query", sorted(QUERIES))
def test_gradcheck(name, form, query):
    torch.manual_seed(0)
    compiled = ckg.compile(ckg.models.create_model(name, 3, 2, 2, form=form).double())
    inputs = tuple(p.detach().clone().requires_grad_(True) for p in compiled.parameters())

    def fn(*values):
        with parameters_replaced(compiled, values):
            return QUERIES[query](compiled)

    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)
