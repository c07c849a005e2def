"""Recipes: YAML files validated against pydantic schemas, with dotted overrides and interpolation."""

from finsent_cli.config.loader import load_recipe, parse_overrides, resolve_data_dir, write_resolved_recipe

__all__ = ["load_recipe", "parse_overrides", "resolve_data_dir", "write_resolved_recipe"]
