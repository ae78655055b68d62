"""How `leadscore --help` reads: each paragraph wrapped once, to the terminal, and no type
placeholder after an on/off flag.

Typer's rich help keeps a docstring's own line breaks and then wraps again to the terminal,
so hand-wrapped paragraphs come out ragged on a narrow terminal; and it prints `<bool>` beside
flags such as `--register/--no-register` or `--help`, which take no value. `Typer` here is
`typer.Typer` with both fixed for every command registered on it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption


def reflow(text: str) -> str:
    """Join the lines of each paragraph (paragraphs are separated by a blank line), so the
    terminal does the only wrapping. A paragraph starting with a backspace line (click's
    "do not rewrap" mark) is kept as written."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        paragraph if paragraph.startswith("\b") else " ".join(paragraph.split())
        for paragraph in paragraphs
    )


class _FlagOption(TyperOption):
    """An on/off flag: it takes no value, so its help shows no type."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _without_flag_types(params: list[Any]) -> list[Any]:
    for param in params:
        if type(param) is TyperOption and param.is_bool_flag:
            param.__class__ = _FlagOption  # same state, only the help display differs
    return params


class Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_types(super().get_params(ctx))


class Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_types(super().get_params(ctx))


class Typer(typer.Typer):
    """typer.Typer whose commands and groups show reflowed help and no flag types."""

    def __init__(self, **settings: Any) -> None:
        settings.setdefault("cls", Group)
        if settings.get("help"):
            settings["help"] = reflow(settings["help"])
        super().__init__(**settings)

    def command(self, name: str | None = None, **settings: Any) -> Callable[..., Any]:
        settings.setdefault("cls", Command)
        register = super().command(name, **settings)

        def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
            registered = register(function)
            info = self.registered_commands[-1]
            if info.help is None and function.__doc__:
                info.help = reflow(function.__doc__)
            return registered

        return decorator
