"""Options of the reliability harness: ``--soak`` for the long runs."""

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--soak",
        action="store_true",
        help="reliability harness: run the long randomized attacks (200+ kill points)",
    )


@pytest.fixture
def kill_points(request) -> int:
    """Kill points per source: a few in the normal suite, many with --soak."""
    return 70 if request.config.getoption("--soak") else 7


@pytest.fixture
def db_kill_points(request) -> int:
    """Kill points per database source (each costs a few dumps)."""
    return 40 if request.config.getoption("--soak") else 3
