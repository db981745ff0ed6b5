"""Shared test set-up. Fixtures for one part live in that part's conftest.py or tests/support/."""
