"""A notebook's ``parameters`` cell (or a profile table) as one validated, frozen dataclass, and lookups in the
plain-dict registries that name the project's choices (configurations, losses, protocols)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

#: The metadata key of a parameter's help text: the one place it is written. The notebooks' ``parameters`` cells
#: carry it as each line's comment (tested), the command lines built from a dataclass as ``--help``.
HELP = "help"


def param(default: Any, help: str) -> Any:
    """A parameter field with its help text (see :data:`HELP`); not part of a training's identity."""
    return dataclasses.field(default=default, metadata={HELP: help})


def help_of(cls: type, name: str) -> str:
    """The help text of field ``name`` of the parameters dataclass ``cls`` ("" when it has none)."""
    return cls.__dataclass_fields__[name].metadata.get(HELP, "")


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (tuple, list):
        args = typing.get_args(annotation)
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        if origin is list and args:
            return all(_type_ok(v, args[0]) for v in value)
        return True
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is type(None):
        return value is None
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def params_from_dict(cls: type, values: Mapping[str, Any], *, where: str = "parameters") -> Any:
    """Build the frozen dataclass ``cls`` from ``values``, refusing unknown names and mistyped values.

    Used to turn a notebook's ``parameters`` cell (or a profile file) into one validated object::

        cfg = params_from_dict(TrainParams, {"lr": 0.01, "steps": 100})

    Raises ``ValueError`` naming the offending key, its value and the accepted names/types. Floats
    given as ints are converted; lists given for tuple fields are converted to tuples.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown {where}: {', '.join(unknown)}; valid names are: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in values.items():
        ann = hints[name]
        if not _type_ok(value, ann):
            raise ValueError(f"{where}: {name}={value!r} has the wrong type; expected {ann}")
        if ann is float and isinstance(value, int):
            value = float(value)
        if typing.get_origin(ann) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def check_counts(obj: Any, *, at_least_1: tuple[str, ...] = (), at_least_0: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError`` naming the first attribute of ``obj`` in ``at_least_1`` below 1 or in ``at_least_0``
    below 0 (the step, size and count fields of the notebooks' parameter dataclasses)."""
    for names, low in ((at_least_1, 1), (at_least_0, 0)):
        for name in names:
            if getattr(obj, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(obj, name)}")


def params_from_globals(cls: type, namespace: Mapping[str, Any]) -> Any:
    """:func:`params_from_dict` of ``cls`` with the values of its fields found in ``namespace`` (a notebook's
    ``globals()`` after its ``parameters`` cell); a field the notebook does not define is an error, so a
    parameters cell and its dataclass cannot drift apart silently."""
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in namespace]
    if missing:
        raise ValueError(f"{cls.__name__}: the notebook defines no {', '.join(missing)}; its parameters cell must "
                         f"declare every field of {cls.__name__}")
    params = params_from_dict(cls, {n: namespace[n] for n in names}, where=f"{cls.__name__} parameters")
    _check_profile_given_alone(params)
    return params


def _check_profile_given_alone(params: Any) -> None:
    """A notebook run with ``-p profile smoke`` and nothing else would train and write with the default profile's
    settings into the default profile's folders under another name: refuse it, naming what to do. (The pipeline
    passes every path under ``<runs-dir>/<profile>``, so its runs never meet this.)"""
    profile = getattr(params, "profile", "default")
    if profile == "default":
        return
    stale = [
        f.name
        for f in dataclasses.fields(params)
        if isinstance(f.default, str)
        and "default" in f.default.split("/")
        and getattr(params, f.name) == f.default
        and f.name != "profile"
    ]
    if stale:
        raise ValueError(f"profile={profile!r} was given, but {', '.join(stale)} still point(s) to the default "
                         f"profile's folders ({getattr(params, stale[0])!r}) and the other parameters are the default "
                         f"profile's values: a notebook does not load a profile by itself. Run it through the "
                         f"pipeline, which passes the profile's values (./run_all.sh --profile {profile} --only "
                         f"<stage>), or pass the values and folders with -p as well")


def parse_decay_steps(text: str) -> tuple[int, ...]:
    """``"1500,1800"`` → ``(1500, 1800)``: notebooks 02/03's ``lr_decay`` parameter as
    :attr:`matting_lib.settings.TrainConfig.lr_decay_steps` (a string, since it is part of stored run identities)."""
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise ValueError(f"lr_decay={text!r}: give comma-separated optimiser steps, e.g. 1500,1800") from None


# ------------------------------------------------------------------------------------------ registries
class UnknownNameError(KeyError, ValueError):
    """A registry lookup failed; the message lists the valid names (printed without KeyError's quotes)."""

    def __str__(self) -> str:
        return str(self.args[0])


def lookup(registry: Mapping[str, Any], name: str, what: str) -> Any:
    """``registry[name]``, or :class:`UnknownNameError` naming ``what`` and listing the valid names."""
    if name not in registry:
        raise UnknownNameError(f"unknown {what} {name!r}; valid names: {', '.join(registry)}")
    return registry[name]
