"""`seqlab config`: the presets and every config key with its type, default and meaning."""

from __future__ import annotations

import typer
import yaml

from seqlab.cli.options import JsonOpt, SetOpt, print_json
from seqlab.config import describe_keys, load_config, preset_names


def register(app: typer.Typer) -> None:
    app.command("config")(config)


def config(
    preset: str = typer.Argument(None, help="A preset name or YAML path to show (resolved, with overrides)."),
    overrides: list[str] = SetOpt,
    keys: bool = typer.Option(False, "--keys", help="List every config key with its type, default and help."),
    as_json: bool = JsonOpt,
) -> None:
    """Show a resolved config (preset or YAML + --set overrides), list the presets, or document every key."""
    if keys:
        rows = describe_keys()
        if as_json:
            print_json({"keys": [{"key": k, "type": t, "default": d, "help": h} for k, t, d, h in rows]})
        else:
            for k, t, d, h in rows:
                typer.echo(f"{k:28s} {t:34s} {d!s:18s} {h}")
        return
    if preset is None and not overrides:
        names = preset_names()
        if as_json:
            print_json({"presets": names})
        else:
            typer.echo("presets (use with `seqlab train NAME` or `seqlab config NAME`):")
            for n in names:
                typer.echo(f"  {n}")
        return
    cfg = load_config(preset, overrides or [])
    if as_json:
        print_json(cfg.to_dict())
    else:
        typer.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True).rstrip())
