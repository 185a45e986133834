"""The configuration layer: how a profile file is read and checked, and the sections of a profile
that belong to no dataset and no method (the protocol's input, training and evaluation settings).

A profile (`params/*.yaml`) is checked with `jsonschema` when it loads: a file with an unknown key,
a wrong type or an impossible value (`train.batch_size: 0`, a probability outside [0, 1]) is
refused before anything runs, with one line naming the file, the key path and what is allowed.
This module holds the schema machinery and the protocol's sections; the sections that name
datasets and methods are contributed by their registries and put together by
`vslrepro.profiles`, which sits above them.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any, Iterator

import jsonschema
from jsonschema.exceptions import ValidationError

from vslrepro.metrics.detection import MODES


class ProfileError(ValueError):
    """A profile file that cannot be used; the message is one line naming the file and the key."""


POSITIVE_INT = {"type": "integer", "minimum": 1}
NON_NEGATIVE_INT = {"type": "integer", "minimum": 0}
POSITIVE = {"type": "number", "exclusiveMinimum": 0}
NON_NEGATIVE = {"type": "number", "minimum": 0}
PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
PATH = {"type": "string", "minLength": 1}
# Plain Python/YAML types of method parameters, by the name their annotation spells.
ANNOTATION_TYPES = {"int": "integer", "float": "number", "bool": "boolean", "str": "string", "None": "null"}


def section(properties: dict[str, Any], required: tuple[str, ...] | None = None) -> dict[str, Any]:
    """An object schema with exactly these keys (all required unless `required` says otherwise)."""
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "required": list(properties if required is None else required)}


def protocol_sections() -> dict[str, dict[str, Any]]:
    """The sections of a profile that no registry owns: its name and seed, the input geometry and
    spectrogram, the object-prior pretraining, training and evaluation settings."""
    return {
        "profile": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
        "seed": NON_NEGATIVE_INT,
        "input": section({"image_size": POSITIVE_INT, "audio_duration": POSITIVE,
                          "sample_rate": POSITIVE_INT, "resample_audio": {"type": "boolean"},
                          "nperseg": POSITIVE_INT, "noverlap": NON_NEGATIVE_INT,
                          "train_storage": {"enum": ["decoded", "compressed", "compressed_flac"]}},
                         required=("image_size", "audio_duration", "sample_rate", "nperseg", "noverlap")),
        "object_prior": section({"epochs": NON_NEGATIVE_INT, "batch_size": POSITIVE_INT, "lr": POSITIVE}),
        "train": section({"epochs": POSITIVE_INT, "batch_size": POSITIVE_INT, "lr": POSITIVE,
                          "weight_decay": NON_NEGATIVE, "num_workers": NON_NEGATIVE_INT,
                          "amp": {"type": "boolean"}, "cpu_threads": POSITIVE_INT,
                          "allow_incomplete": {"type": "boolean"}},
                         required=("epochs", "batch_size", "lr", "weight_decay", "num_workers")),
        "evaluate": section({"batch_size": POSITIVE_INT, "binarize": {"enum": ["relative", "absolute"]},
                             "pred_size": {**PROBABILITY, "exclusiveMinimum": 0}, "pred_thr": PROBABILITY,
                             "iou_thr": PROBABILITY, "confidence": {"enum": ["max", "topk_mean"]},
                             "mode": {"enum": list(MODES)}, "n_boot": POSITIVE_INT,
                             "table4_draws": POSITIVE_INT, "allow_incomplete": {"type": "boolean"}},
                            required=("batch_size", "binarize", "pred_size", "pred_thr", "iou_thr",
                                      "confidence", "mode", "n_boot")),
    }


def hyperparameter_schema(cls: type) -> dict[str, Any]:
    """The hyperparameters a class accepts: the keyword parameters of its `__init__`, typed where
    the annotation is a plain int/float/bool/str (or None), limited to the class's
    `hyperparameter_ranges`; empty (`{}` or nothing) allowed."""
    properties: dict[str, Any] = {}
    open_ended = False
    for name, parameter in list(inspect.signature(cls.__init__).parameters.items())[1:]:  # [0]: self
        if parameter.kind is parameter.VAR_KEYWORD:
            open_ended = True
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        annotation = parameter.annotation
        text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
        parts = [part.strip() for part in text.split("|")]
        kinds = [ANNOTATION_TYPES[part] for part in parts if part in ANNOTATION_TYPES]
        properties[name] = {"type": kinds} if kinds and len(kinds) == len(parts) else {}
    ranges = getattr(cls, "hyperparameter_ranges", {})
    unknown = sorted(set(ranges) - set(properties))
    if unknown:
        raise TypeError(f"{cls.__qualname__}.hyperparameter_ranges names {unknown}, which __init__ does not take")
    for name, allowed in ranges.items():
        properties[name] = {**properties[name], **allowed}
    return {"type": ["object", "null"], "properties": properties, "additionalProperties": open_ended}


# YAML integers only: jsonschema's "integer" also takes 4.0, which range() and DataLoader refuse.
Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)))


def validate(params: Any, source: str | Path, schema: dict[str, Any]) -> None:
    """Check a parsed profile against `schema` (`vslrepro.profiles.profile_schema()`).

    Raises:
        ProfileError: one line, "<source>: <key path>: <problem>; allowed: ...", for every problem
            found (the first few, then how many more).
    """
    errors = sorted(Validator(schema).iter_errors(params), key=lambda e: [str(p) for p in e.path])
    problems = list(dict.fromkeys(line for error in errors for line in _describe_error(error)))
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ProfileError(f"{source}: " + "; ".join(problems[:3]) + more)


def key_path(path: Any) -> str:
    """`train.batch_size`, `datasets[1]`: a key path as a profile's reader spells it."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe_error(error: ValidationError) -> Iterator[str]:
    """One phrase per problem: the key path, what is wrong and what is allowed."""
    where = list(error.path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        for key in sorted(set(error.instance) - set(allowed), key=str):
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            yield f"{key_path(where + [key])}: unknown key{hint}; allowed: {', '.join(allowed) or 'none'}"
    elif error.validator == "required":
        for key in error.validator_value:
            if key not in error.instance:
                yield f"{key_path(where + [key])}: missing (a required key)"
    else:
        yield f"{key_path(where)}: {error.instance!r} is not allowed; allowed: {allowed_values(error.schema)}"


def allowed_values(schema: dict[str, Any]) -> str:
    """What a (sub)schema allows, in words: "an integer >= 1", "one of 'exact', 'official'"."""
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    kinds = schema.get("type", [])
    names = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
             "array": "a list", "object": "a mapping", "null": "nothing (null)"}
    text = " or ".join(names[k] for k in ([kinds] if isinstance(kinds, str) else kinds)) or "any value"
    if "items" in schema and "enum" in schema["items"]:
        text += " of " + allowed_values(schema["items"])[len("one of "):]
        text += ", each once" if schema.get("uniqueItems") else ""
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if low is not None and high is not None:
        lower = "(" if "exclusiveMinimum" in schema else "["
        upper = ")" if "exclusiveMaximum" in schema else "]"
        text += f" in {lower}{low}, {high}{upper}"
    else:
        for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
            if key in schema:
                text += f" {sign} {schema[key]}"
    if "minLength" in schema:
        text += " (not empty)"
    if "pattern" in schema:
        text += f" matching {schema['pattern']}"
    if "minItems" in schema:
        text += f" (at least {schema['minItems']})"
    return text
