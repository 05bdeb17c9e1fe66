"""Helpers of test_container_rules.py: the agent as a subprocess, a loopback API-server stand-in, tool images."""
