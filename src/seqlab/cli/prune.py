"""Placeholder while the command is being written (issue 19); its owner replaces this file."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
