"""Tiny evolution-then-gradient run on the analytic Gaussian mixture, for tests (seconds on a CPU)."""
from ddss.configs import gmm_ddss_test, gmm_evolution_test
from ddss.experiments import search_then_learn


def get_config():
    return search_then_learn.compose(gmm_ddss_test.get_config(), gmm_evolution_test.get_config())
