"""Shared test helpers; the fixtures themselves come from inkind.testing."""
