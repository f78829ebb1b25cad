"""Floats that keep the spelling their author wrote, from the text a client sends to the file cwltool reads.

cwltool puts a float on a command line as the decimal its YAML text spells: `1.23e5` becomes `123000` and
`123000.0` stays `123000.0`, although both are the same number. A package (or a job order) that went through Python
floats would change what its tool sees, so a float whose spelling gives another decimal than Python's own `repr`
is carried as a SpelledFloat: parsed from YAML or JSON here, stored beside the document (`spellings` / `respell`,
since Elasticsearch's client writes plain floats), and written back by `dumps`.
"""

from __future__ import annotations

import functools
import json
import math
import re
import secrets
from decimal import Decimal, InvalidOperation
from typing import Any

from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.scalarfloat import ScalarFloat


class SpelledFloat(float):
    """A float and the decimal spelling (`str(Decimal(...))`, a valid JSON number) it was written with."""

    spelling: str

    def __new__(cls, value: float, spelling: str) -> SpelledFloat:
        number = super().__new__(cls, value)
        number.spelling = spelling
        return number

    def __reduce__(self) -> tuple[Any, ...]:
        return SpelledFloat, (float(self), self.spelling)

    def __deepcopy__(self, memo: dict[int, Any]) -> SpelledFloat:
        return self


def _decimal_text(text: str) -> str | None:
    try:
        return str(Decimal(text.replace("_", "")))
    except InvalidOperation:
        return None


def keep_spelling(value: float, text: str) -> float:
    """`value`, as a SpelledFloat when `text` spells a decimal Python's repr of it would not give."""
    if not math.isfinite(value):
        return value
    if repr(value) == text:  # the common case, without two Decimals
        return value
    spelling = _decimal_text(text)
    if spelling is None or spelling == _decimal_text(repr(float(value))):
        return float(value)
    return SpelledFloat(value, spelling)


def parse_json_float(text: str) -> float:
    """For `json.loads(..., parse_float=parse_json_float)`."""
    return keep_spelling(float(text), text)


def loads(text: str | bytes, **kwargs: Any) -> Any:
    return json.loads(text, parse_float=parse_json_float, **kwargs)


class SpellingConstructor(SafeConstructor):
    """ruamel's safe constructor, whose floats keep their spelling."""

    def construct_spelled_float(self, node: Any) -> Any:
        value = self.construct_yaml_float(node)
        return keep_spelling(value, str(node.value)) if isinstance(value, float) else value


SpellingConstructor.add_constructor("tag:yaml.org,2002:float", SpellingConstructor.construct_spelled_float)


def safe_yaml() -> Any:
    """A YAML 1.2 safe loader (ruamel's, pure) whose floats keep their spelling."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = SpellingConstructor
    return yaml


def _ruamel_spelling(value: ScalarFloat) -> str:
    from ruamel.yaml.representer import RoundTripRepresenter

    return str(RoundTripRepresenter().represent_scalar_float(value).value)


def _spelling_of(value: Any) -> str | None:
    if isinstance(value, SpelledFloat):
        return value.spelling
    if isinstance(value, ScalarFloat):  # what cwltool's own loader (ruamel round trip) gives, as in a packed tool
        kept = keep_spelling(float(value), _ruamel_spelling(value))
        return kept.spelling if isinstance(kept, SpelledFloat) else None
    return None


def _marked(node: Any, marks: list[str], tag: str) -> Any:
    """`node` with every spelled float replaced by a marker string naming its index in `marks`."""
    if isinstance(node, dict):
        return {k: _marked(v, marks, tag) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_marked(v, marks, tag) for v in node]
    if isinstance(node, float):
        spelling = _spelling_of(node)
        if spelling is not None:
            marks.append(spelling)
            return f"{tag}{len(marks) - 1}\x00"
    return node


def has_spelled(node: Any) -> bool:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, float) and _spelling_of(item) is not None:
            return True
    return False


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps`, writing each spelled float (ours or ruamel's) as it was spelled."""
    if not has_spelled(value):
        return json.dumps(value, **kwargs)
    # the C encoder writes every float with float.__repr__, so spelled ones go in as unique strings, then out
    tag = f"\x00ades-float-{secrets.token_hex(8)}-"
    marks: list[str] = []
    text = json.dumps(_marked(value, marks, tag), **kwargs)
    quoted = re.escape(json.dumps(tag, ensure_ascii=kwargs.get("ensure_ascii", True))[1:-1])
    return re.sub(f'"{quoted}(\\d+)\\\\u0000"', lambda m: marks[int(m.group(1))], text)


def plain(value: Any, **kwargs: Any) -> Any:
    """`value` as JSON gives it back (dicts, lists, str, int, float, bool, None), spelled floats kept."""
    return loads(dumps(value, **kwargs))


def spellings(node: Any) -> dict[str, str]:
    """The spelled floats of a JSON document by JSON pointer, to store beside it."""
    found: dict[str, str] = {}
    _collect(node, [], found)
    return found


def _collect(node: Any, path: list[str], found: dict[str, str]) -> None:
    # on every submission's job order: pointers are only built for what is found
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        if isinstance(node, float) and type(node) is not float:
            spelling = _spelling_of(node)
            if spelling is not None:
                found["".join(f"/{_escape(str(k))}" for k in path)] = spelling
        return
    for key, value in items:
        if isinstance(value, dict | list | float):
            path.append(key)
            _collect(value, path, found)
            path.pop()


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def respell(node: Any, found: dict[str, str]) -> Any:
    """`node` (changed in place, and returned) with the floats `spellings` found put back; a pointer that no longer
    leads to the same number is ignored."""
    for pointer, spelling in found.items():
        keys = [k.replace("~1", "/").replace("~0", "~") for k in pointer.split("/")[1:]]
        parent = node
        try:
            for key in keys[:-1]:
                parent = parent[int(key)] if isinstance(parent, list) else parent[key]
            last: Any = int(keys[-1]) if isinstance(parent, list) else keys[-1]
            value = parent[last]
        except (KeyError, IndexError, ValueError, TypeError):
            continue
        if isinstance(value, float) and value == float(spelling):
            parent[last] = SpelledFloat(value, spelling)
    return node


@functools.lru_cache(maxsize=1024)
def _scalar_float(spelling: str) -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="rt", pure=True).load(spelling)


def for_cwltool(node: Any) -> Any:
    """`node` with each float as cwltool's own loader reads its JSON spelling (a ruamel ScalarFloat, which cwltool
    writes on a command line as a decimal: `1e-05` as `0.00001`, `1.23E+5` as `123000`), for a job order handed to
    cwltool in memory rather than in a file."""
    if isinstance(node, dict):
        return {k: for_cwltool(v) for k, v in node.items()}
    if isinstance(node, list):
        return [for_cwltool(v) for v in node]
    if isinstance(node, float) and math.isfinite(node) and not isinstance(node, ScalarFloat):
        return _scalar_float(node.spelling if isinstance(node, SpelledFloat) else repr(float(node)))
    return node
