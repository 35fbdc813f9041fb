"""Shared test helpers.

Reference libraries (torch, diffusers) are optional for users but required in CI: with
DDSS_REQUIRE_REFERENCES=1 (set by .ci/run) a missing one is an error, never a silent skip.
"""
import importlib
import os

import pytest


def require(module_name: str):
    if os.environ.get("DDSS_REQUIRE_REFERENCES") == "1":
        return importlib.import_module(module_name)
    return pytest.importorskip(module_name)


def relative_error(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
