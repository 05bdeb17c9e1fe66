"""Lanner's own default rules, written in Falco's rules language (see docs/default-rules.md)."""

from __future__ import annotations

from pathlib import Path

RULES_FILE: Path = Path(__file__).with_name("lanner_rules.yaml")
"""The default rules file, shipped as package data next to this module."""
