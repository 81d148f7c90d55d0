"""Fixtures and stand-ins shared by several test files."""
