"""Test setup shared by every test module (as Pyro's own conftest does it)."""

import os

import numpy as np
import pyro
import pytest
import torch
from hypothesis import settings

pyro.enable_validation(True)
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _fresh_state():
    """Clear the param store and seed everything before each test."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
    pyro.clear_param_store()
