"""Fixtures: see conftest.py."""
