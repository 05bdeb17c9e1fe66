"""A TCP stand-in for the Kubernetes API server (the agent itself runs through tests/agent_support.py)."""

from __future__ import annotations

from lanner.simulate.listener import Listener

__all__ = ["Listener"]
