"""argparse built from config dataclasses: every field is a flag, its default shown in --help."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from pipelines.core.config import RunOptions, TaskConfig
from pipelines.core.errors import ConfigError


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (``error: ... (see --help)``, exit 2
    through the entry point's error boundary) instead of the whole usage text."""

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(f"{message} (see --help)")


def _add_fields(group: argparse._ArgumentGroup, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "default": default,
            "help": f.metadata.get("help", ""),
        }
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is list:
            item = typing.get_args(kind)[0]
            kwargs["type"] = lambda s, item=item: [item(v) for v in s.split(",") if v.strip()]
        else:
            kwargs["type"] = kind
            if f.metadata.get("choices"):
                kwargs["choices"] = f.metadata["choices"]
        group.add_argument(flag, **kwargs)


def build_parser(
    prog: str, description: str, config_class: type[TaskConfig]
) -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    _add_fields(parser.add_argument_group("task"), config_class)
    _add_fields(parser.add_argument_group("run"), RunOptions)
    return parser


def split_namespace(
    namespace: argparse.Namespace, config_class: type[TaskConfig]
) -> tuple[TaskConfig, RunOptions]:
    values = vars(namespace)
    pick = lambda cls: {f.name: values[f.name] for f in dataclasses.fields(cls)}  # noqa: E731
    return config_class(**pick(config_class)), RunOptions(**pick(RunOptions))
