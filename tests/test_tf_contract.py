"""The public-function contract for refdet.tf_ops (cases in tests/_tf_contract_cases.py): read-only inputs
accepted and never written, results independent of memory layout, bad inputs refused with a clear error."""
import copy
import re

import numpy as np
import pytest

import refdet.tf_ops  # noqa: F401
from tests._tf_contract_cases import BAD, CASES
from tests._layouts import KINDS, with_layout
from tests.test_contract import _equal, _freeze, _func


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_readonly_inputs_accepted_and_not_modified(case):
    args, kwargs = case.make(np.random.default_rng(0))
    frozen_args, frozen_kwargs = _freeze(args), _freeze(kwargs)
    pristine = copy.deepcopy((frozen_args, frozen_kwargs))
    _func(case.name)(*frozen_args, **frozen_kwargs)
    assert _equal(pristine, (frozen_args, frozen_kwargs)), f"{case.name} modified its input"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_results_do_not_depend_on_memory_layout(case, kind):
    args, kwargs = case.make(np.random.default_rng(0))
    expected = _func(case.name)(*args, **kwargs)
    args2, kwargs2 = case.make(np.random.default_rng(0))
    got = _func(case.name)(*with_layout(args2, kind), **with_layout(kwargs2, kind))
    assert _equal(expected, got), f"{case.name}: a {kind} input changes the result"


@pytest.mark.parametrize("bad", BAD, ids=lambda b: b.name)
def test_bad_input_rejected_with_clear_error(bad):
    args, kwargs = bad.make(np.random.default_rng(0))
    with pytest.raises(bad.error) as exc:
        _func(bad.name)(*args, **kwargs)
    assert re.search(bad.match, str(exc.value)), str(exc.value)
