"""resolve_dtype: the one parser of user-given dtypes (strings, torch and numpy dtypes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyenamd import System
from hyenamd.dtypes import dtype_name, precision_dtype, resolve_dtype


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
        ("float32", torch.float32),
        ("float64", torch.float64),
        ("Float64", torch.float64),
        ("single", torch.float32),
        ("double", torch.float64),
        ("torch.float64", torch.float64),
        (np.float32, torch.float32),
        (np.dtype("float64"), torch.float64),
        (None, None),
    ],
)
def test_accepted_spellings(value, expected):
    assert resolve_dtype(value) is expected


@pytest.mark.parametrize("value", ["float16", "fp32", "", torch.int64, torch.float16, 64, np.int32])
def test_anything_else_is_a_clear_value_error(value):
    with pytest.raises(ValueError, match=r"dtype must be 'float32' or 'float64'"):
        resolve_dtype(value)


def test_none_refused_when_required_and_names_and_precision():
    with pytest.raises(ValueError, match="got None"):
        resolve_dtype(None, allow_none=False)
    assert dtype_name(torch.float64) == "float64" and dtype_name("single") == "float32"
    assert dtype_name(None) is None
    assert precision_dtype("single") is torch.float32 and precision_dtype("double") is torch.float64
    assert precision_dtype(None) is None
    with pytest.raises(ValueError, match="precision must be 'single' or 'double'"):
        precision_dtype("mixed")


def test_system_and_batch_to_take_names():
    s = System(torch.zeros(2, 3, dtype=torch.float64) + torch.tensor([[0.0], [1.0]]), [1, 1])
    assert s.to(dtype="float32").dtype is torch.float32
    with pytest.raises(ValueError, match="dtype must be"):
        s.to(dtype="half")


def test_from_ase_and_md_state_take_names():
    from ase import Atoms

    from hyenamd.engine import VelocityVerlet
    from hyenamd.engine.potentials import ZeroPotential

    s = System.from_ase(Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]]), dtype="float32")
    assert s.dtype is torch.float32
    state = VelocityVerlet(ZeroPotential(), 1.0).init(s.to(dtype="float64"))
    assert state.to(dtype="float32").positions.dtype is torch.float32
    with pytest.raises(ValueError, match="dtype must be"):
        System.from_ase(Atoms("H"), dtype="int8")
