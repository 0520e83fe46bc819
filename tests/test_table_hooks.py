"""Table hooks: a table kind of its own plugs into the executor, the trainer and the model transforms
without edits there, and a hook it lacks is a clear error (see circuitkg/params/tables.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from circuitkg.compilers import KGEModel, cp_circuit
from torch import Tensor, nn

import circuitkg as ckg
from circuitkg.errors import CircuitKGError, UnsupportedHookError
from circuitkg.params import ColumnView, FreeTable, Table
from circuitkg.params.tables import DEFAULT_CHUNK
from circuitkg.testing import (
    all_assignments,
    assert_conditionals_consistent,
    assert_marginals_consistent,
    assert_normalised,
    evaluate_naive,
)
from circuitkg.train import initialise, n3


class TanhTable(Table):
    """``T = 2 tanh(θ)``: rows computed from a parameter; only ``rows`` and ``chunks`` defined."""

    def __init__(self, num_values: int, width: int) -> None:
        super().__init__(num_values, width)
        self.theta = nn.Parameter(torch.randn(num_values, width, dtype=torch.float64))

    def rows(self, index: Tensor) -> Tensor:
        return 2 * torch.tanh(self.theta[index])

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        for block in torch.split(self.theta, chunk_size):
            yield 2 * torch.tanh(block)


class SoftplusTable(TanhTable):
    """A non-negative computed table, ``softplus(θ)``, for the monotone (log-space) form."""

    nonnegative = True

    def rows(self, index: Tensor) -> Tensor:
        return nn.functional.softplus(self.theta[index])

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        for block in torch.split(self.theta, chunk_size):
            yield nn.functional.softplus(block)


class Reversed(Table):
    """``T[x] = base[x][::-1]``: a view that is no ColumnView, announced through ``as_view``/``fold``."""

    def __init__(self, base: Table) -> None:
        super().__init__(base.num_values, base.width)
        self.base = base

    def rows(self, index: Tensor) -> Tensor:
        return self.base.rows(index).flip(-1)

    def as_view(self):
        k = self.width
        columns = torch.arange(k - 1, -1, -1, device=self.device)
        return self.base, columns, tuple((c, c + 1) for c in range(k - 1, -1, -1))

    def fold(self, coef: Tensor, dim: int = -1) -> Tensor:
        return coef.flip(dim)

    def parameter_table(self) -> Table:
        return self.base.parameter_table()


class CustomCP(KGEModel):
    """CP-shaped (DistMult: the entity table read by S and O) over tables of a given kind."""

    name = "cp"

    def __init__(
        self, table_kind=TanhTable, num_entities=4, num_relations=3, rank=3, form="squared"
    ):
        super().__init__(num_entities, num_relations, rank, form)
        self.entity = table_kind(num_entities, rank)
        self.relation = table_kind(num_relations, rank)

    def build_circuit(self):
        return cp_circuit(self.entity, self.relation, self.entity, name="custom")


def _brute_log_z(compiled) -> Tensor:
    phi = evaluate_naive(compiled.circuit, all_assignments(compiled.circuit))
    mass = phi * phi if compiled.form == "squared" else phi
    return torch.log(mass.sum())


@pytest.mark.parametrize("form", ["squared", "monotone"])
def test_a_computed_table_answers_every_query_exactly(form):
    torch.manual_seed(0)
    model = CustomCP(SoftplusTable if form == "monotone" else TanhTable, form=form).double()
    compiled = ckg.compile(model)
    assert compiled.log_partition().item() == pytest.approx(_brute_log_z(compiled).item(), rel=1e-9)
    assert_normalised(compiled)
    assert_marginals_consistent(compiled)
    assert_conditionals_consistent(compiled)


def test_a_view_of_its_own_kind_reads_its_base_through_as_view_and_fold():
    torch.manual_seed(1)
    entity, relation = TanhTable(4, 3), TanhTable(3, 3)
    circuit = cp_circuit(Reversed(entity), relation, entity, name="reversed")
    circuit.modules().double()
    compiled = ckg.compile(circuit, form="squared")
    # the S layer's rows are the base's rows, selected lazily by the Hadamard layer
    assert [id(layer) in compiled.plan.view_rows for layer in circuit.input_layers()].count(
        True
    ) == 1
    assert compiled.log_partition().item() == pytest.approx(_brute_log_z(compiled).item(), rel=1e-9)
    assert_normalised(compiled)
    assert_conditionals_consistent(compiled)


def test_no_grad_grams_follow_the_state_token():
    torch.manual_seed(2)
    model = CustomCP().double()
    compiled = ckg.compile(model)
    with torch.no_grad():
        before = compiled.log_partition()
        token = model.entity.state_token()
        model.entity.theta.mul_(0.5)  # in place: the cached Gram must not be reused
        assert model.entity.state_token() != token
        after = compiled.log_partition()
    assert after.item() != pytest.approx(before.item())
    assert after.item() == pytest.approx(_brute_log_z(compiled).item(), rel=1e-9)


def test_a_table_without_init_positive_is_a_clear_error():
    model = CustomCP()
    with pytest.raises(UnsupportedHookError, match=r"TanhTable does not implement init_positive_"):
        initialise(model, "positive")
    assert isinstance(UnsupportedHookError("x"), CircuitKGError | TypeError)
    before = model.entity.theta.detach().clone()
    initialise(model, "auto")  # a squared form whose tables cannot: left as it is
    assert torch.equal(model.entity.theta, before)


def test_a_table_without_kronecker_factor_is_a_clear_error():
    with pytest.raises(
        UnsupportedHookError, match=r"TanhTable does not implement kronecker_factor"
    ):
        CustomCP(rank=4).with_kronecker("entity")


def test_default_hooks_describe_a_plain_table():
    table = TanhTable(4, 3)
    base, columns, runs = table.as_view()
    assert base is table and columns.tolist() == [0, 1, 2] and runs == ((0, 3),)
    coef = torch.randn(2, 3)
    assert table.fold(coef) is coef and table.parameter_table() is table
    assert not table.supports_positive_init
    view = ColumnView(table, [2, 0, 1])
    assert view.as_view()[0] is table and view.as_view()[2] == ((2, 3), (0, 2))
    assert view.parameter_table() is table
    free = FreeTable(4, 6)
    free.init_positive_(0.5, 0.0, slice(0, 3))
    assert torch.equal(free.weight[:, :3], torch.full((4, 3), 0.5))
    assert torch.equal(free.weight[:, 3:], torch.zeros(4, 3))
    factor = free.kronecker_factor(2)
    assert isinstance(factor, FreeTable) and factor.width == 2 and factor.num_values == 4


def test_n3_of_complex_is_the_cubed_complex_modulus():
    torch.manual_seed(3)
    model = ckg.models.ComplEx(5, 3, rank=2, form="squared").double()
    triples = torch.tensor([[0, 1, 4], [3, 2, 3], [1, 0, 0]])

    def as_complex(x: Tensor) -> Tensor:
        return torch.complex(x[:, :2], x[:, 2:])

    e = as_complex(model.entity.weight.detach())
    w = as_complex(model.relation.weight.detach())
    s, r, o = triples.T
    expected = sum(z.abs().pow(3).sum() for z in (e[s], w[r], e[o])) / 3
    assert n3(model, triples).item() == pytest.approx(expected.item(), rel=1e-12)
