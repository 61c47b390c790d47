"""Typed, validated stack settings: the one place the program reads configuration.

`model.Settings` declares every key once (type, default, description, allowed values). This package
validates a stack's values against it and against the rules that span keys (`rules`), and stops the
program with one message naming each bad key, its value and what is allowed - before any resource is
registered. `schema` derives Pulumi.yaml's `config:` block and the README table from the same model.
"""

import os
from collections.abc import Collection, Mapping
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config  # the SDK has no public listing of all keys
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from infra.settings.model import ImageRef, Settings, SettingsError
from infra.settings.provider import check_default_tags, check_namespaces, parse_provider
from infra.settings.rules import Errors, check_consistency
from infra.settings.schema import bounds, choices, field_by_key, project_schema, pulumi_type

__all__ = ["ImageRef", "Settings", "SettingsError", "load_settings", "parse_config", "parse_settings",
           "project_schema"]

UNKNOWN_KEY = "is not a setting of this project (see Pulumi.yaml for the keys)"


def parse_settings(project: str, stack: str, raw: Mapping[str, Any],
                   other: Mapping[str, Any] | None = None, environment: Mapping[str, str] | None = None,
                   secret_keys: Collection[str] = ()) -> Settings:
    """Parse and validate raw config values (key without namespace -> value); raise SettingsError.

    `other`: the config keys outside the project's namespace, with their namespace (`aws:region`, ...).
    `environment`: where the provider would find AWS_REGION when aws:region is not set.
    `secret_keys`: the keys the stack file holds encrypted (`pulumi config set --secret`)."""
    errors = Errors(project)
    other = other or {}
    check_namespaces(errors, project, other)
    provider = parse_provider(errors, {key[4:]: value for key, value in other.items() if key.startswith("aws:")},
                              {key[4:] for key in secret_keys if key.startswith("aws:")})
    try:
        settings = Settings.model_validate(dict(raw))
    except ValidationError as invalid:
        for detail in invalid.errors():
            _report(errors, detail)
    else:
        settings._project, settings._stack = project, stack
        settings._provider = provider
        environment = environment or {}
        settings._region = str(provider.get("region") or environment.get("AWS_REGION")
                               or environment.get("AWS_DEFAULT_REGION") or "")
        check_default_tags(errors, provider, settings.tags)
        # Rules that span keys only make sense once every key parsed.
        check_consistency(errors, settings)
    if errors:
        raise SettingsError(f"invalid configuration for stack '{stack}':\n  " + "\n  ".join(errors))
    return settings


def _report(errors: Errors, detail: ErrorDetails) -> None:
    """One pydantic error in the project's style: `project:key = value: what is allowed`."""
    key, value, kind = str(detail["loc"][0]), detail["input"], detail["type"]
    if kind == "extra_forbidden":
        errors.fail(key, value, UNKNOWN_KEY)
        return
    field = field_by_key(key)
    low, high = bounds(field)
    if kind == "secret":  # never echo a credential into CI logs
        value = str(value).partition("=")[0] + "=<redacted>"
    elif pulumi_type(field) == "integer" and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)  # shown as the number the CLI's text stands for
    if kind in ("greater_than_equal", "less_than_equal"):
        errors.fail(key, int(value), f"must be from {low} to {high}")
    elif kind == "whole_number":
        errors.fail(key, value, f"must be a whole number from {low} to {high}")
    elif kind == "literal_error":
        errors.fail(key, value, "must be one of " + ", ".join(choices(field)))
    elif kind in ("setting", "secret"):  # our own checks: the message is the "must be ..." sentence
        errors.fail(key, value, detail["msg"])
    else:  # a shape pydantic refused before any check (not text, not a list, ...)
        errors.fail(key, value, f"must be {'a list of strings' if pulumi_type(field) == 'array' else 'text'}")


def parse_config(project: str, stack: str, config: Mapping[str, Any], environment: Mapping[str, str],
                 secret_keys: Collection[str] = ()) -> Settings:
    """`parse_settings` for a whole config map keyed `namespace:key`, as the CLI hands it to the program: the
    project's own keys are the settings, every other namespace goes to `other`."""
    prefix = project + ":"
    own = {key[len(prefix):]: value for key, value in config.items() if key.startswith(prefix)}
    other = {key: value for key, value in config.items() if not key.startswith(prefix)}
    return parse_settings(project, stack, own, other, environment, secret_keys)


def load_settings() -> Settings:
    """Read this stack's configuration (Pulumi.yaml defaults + stack file) and validate it."""
    config = _all_config()
    secret_keys = [key for key in config if runtime_config.is_config_secret(key)]
    return parse_config(pulumi.get_project(), pulumi.get_stack(), config, os.environ, secret_keys)


def _all_config() -> dict[str, Any]:
    """Every config value of the stack, keyed `namespace:key` (older CLIs pass `namespace:config:key`)."""
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return {key.replace(":config:", ":", 1): value for key, value in merged.items()}
