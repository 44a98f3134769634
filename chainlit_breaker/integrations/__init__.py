"""Adapters between chainlit_breaker and application frameworks.

Each subpackage imports its framework; this package itself imports nothing.
"""
