"""The public testing kit's extras: the chi-square sampling assertion, and the error without
hypothesis."""

import subprocess
import sys

import pytest
import torch

import circuitkg as ckg
from circuitkg.testing import assert_samples_follow, chi_square


@pytest.fixture(scope="module")
def compiled():
    torch.manual_seed(0)
    model = ckg.models.CP(4, 2, 3, form="monotone").double()
    return ckg.compile(model)


def test_exact_samples_pass(compiled):
    generator = torch.Generator().manual_seed(1)
    samples = compiled.sample(20_000, generator=generator)
    assert_samples_follow(compiled, samples)
    given = compiled.sample(5_000, given={"r": 1}, generator=generator)
    assert_samples_follow(compiled, given, given={"r": 1})


def test_uniform_samples_of_a_peaked_model_fail():
    """A model whose mass sits on one triple: uniform draws are far from it."""
    model = ckg.models.CP(3, 1, 1, form="monotone").double()
    with torch.no_grad():
        for table in (model.subject, model.relation, model.object):
            table.log_weight.fill_(-5.0)
            table.log_weight[0] = 2.0
    compiled = ckg.compile(model)
    uniform = torch.stack([torch.randint(0, n, (3000,)) for n in (3, 1, 3)], dim=1)
    with pytest.raises(AssertionError, match="do not follow"):
        assert_samples_follow(compiled, uniform)


def test_chi_square_pools_small_cells():
    counts = torch.tensor([50.0, 48.0, 1.0, 1.0])
    expected = torch.tensor([49.0, 49.0, 1.0, 1.0])
    statistic, dof = chi_square(counts, expected)
    # the two small cells (2 expected together) join the smallest large one: 2 cells, 1 dof
    assert dof == 1
    # cell 1 (50 + 1 + 1 counted, 49 + 1 + 1 expected) and cell 2 (48 against 49)
    assert statistic == pytest.approx((52 - 51) ** 2 / 51 + (48 - 49) ** 2 / 49)


def test_a_sample_on_an_impossible_value_fails():
    with pytest.raises(AssertionError, match="probability zero"):
        chi_square(torch.tensor([3.0, 1.0]), torch.tensor([4.0, 0.0]))


def test_without_hypothesis_the_kit_says_which_extra():
    code = (
        "import sys\nsys.modules['hypothesis'] = None\n"
        "from circuitkg.errors import CircuitKGError\n"
        "try:\n    import circuitkg.testing\nexcept CircuitKGError as err:\n    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "hypothesis" in done.stdout and "circuitkg[testing]" in done.stdout
