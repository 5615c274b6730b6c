"""Device parametrisation shared by the test modules: every CUDA path runs where a GPU is lent, its CPU twin
everywhere (tests/test_gpu.py explains the ``gpu`` marker)."""

from __future__ import annotations

import pytest
import torch

#: the marks of a test that needs CUDA: the ``gpu`` marker (``pytest -m gpu``) and a skip where CUDA is missing
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available() is False)")
GPU = [pytest.mark.gpu, NEEDS_CUDA]
#: the devices of a test that runs on CPU everywhere and on CUDA where a GPU is lent
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=GPU)]
