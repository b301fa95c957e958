"""Each config key's type and range, declared once, next to its default, in the YAML.

A key's line in configs/ carries its declaration in brackets at the start of its
comment:

    lr: 0.001           # [float > 0] Adam learning rate
    target: expected    # [one of soft, expected, max] next-state value in the TD target
    fixed_alpha: null   # [float > 0 | null] a number fixes alpha; null = learned

Grammar of a declaration (alternatives joined by " | "):
    bool | str | list | null | int | float          the type (float accepts ints)
    int >= 1 | float > 0                             the type and one bound
    0 <= float <= 1 | 0 < float <= 1                 the type between two bounds
    one of a, b, c                                   one of these values

`schema()` reads every YAML file once, resolving where each file's keys land in
the composed config (its `# @package` line, or the `@pkg` its includers give it),
and `check(cfg, schema)` checks every declared key of a composed config, raising
SchemaError with one sentence that names the key, what it must be and what it got.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import operator
import re
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_]\w*):(?P<rest>.*)$")
_DECL = re.compile(r"#\s*\[(?P<decl>[^\]]+)\]")
_INCLUDE = re.compile(r"^\s*-\s*(?P<path>/?[\w/]+?)(?:@(?P<pkg>[\w.]+))?\s*(?:#.*)?$")
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_BOUND = re.compile(
    r"^(?:(?P<lo>[-\d.e]+)\s*(?P<lo_op><=|<)\s*)?(?P<type>int|float)"
    r"(?:\s*(?P<hi_op><=|<|>=|>)\s*(?P<hi>[-\d.e]+))?$"
)


class SchemaError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Declaration:
    """One key's declared type and range; `text` is how it was written."""

    text: str
    source: str  # file:line, for errors in the declarations themselves

    @functools.cached_property
    def alternatives(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.text.split("|"))

    def accepts(self, value) -> bool:
        return any(_accepts(alt, value, self.source) for alt in self.alternatives)

    def describe(self) -> str:
        """The declaration in words: "an integer >= 1", "a number in (0, 1]", ..."""
        return " or ".join(_describe(alt) for alt in self.alternatives)


def _describe(alt: str) -> str:
    named = {"bool": "true or false", "str": "a string", "list": "a list", "null": "null"}
    if alt in named:
        return named[alt]
    if alt.startswith("one of "):
        return alt
    m = _BOUND.match(alt)
    if m is None:
        return alt
    kind = "an integer" if m["type"] == "int" else "a number"
    if m["lo"] is not None and m["hi"] is not None:
        left, right = "[" if m["lo_op"] == "<=" else "(", "]" if m["hi_op"] == "<=" else ")"
        return f"{kind} in {left}{m['lo']}, {m['hi']}{right}"
    if m["lo"] is not None:
        flipped = {"<": ">", "<=": ">="}[m["lo_op"]]
        return f"{kind} {flipped} {m['lo']}"
    return kind if m["hi"] is None else f"{kind} {m['hi_op']} {m['hi']}"


def _accepts(alt: str, value, source: str) -> bool:
    if alt == "null":
        return value is None
    if alt == "bool":
        return isinstance(value, bool)
    if alt == "str":
        return isinstance(value, str)
    if alt == "list":
        return isinstance(value, list | tuple) or type(value).__name__ == "ListConfig"
    if alt.startswith("one of "):
        return str(value) in {v.strip() for v in alt[7:].split(",")} and not isinstance(value, bool | None)
    m = _BOUND.match(alt)
    if m is None:
        raise SchemaError(f"{source}: cannot read the declaration [{alt}]")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if m["type"] == "int" and not isinstance(value, int):
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    if m["lo"] is not None and not _OPS[m["lo_op"]](float(m["lo"]), value):
        return False
    return m["hi"] is None or _OPS[m["hi_op"]](value, float(m["hi"]))


def _parse_file(path: Path) -> tuple[str | None, list[tuple[str, str | None]], dict[str, Declaration]]:
    """(package header or None, includes [(path, pkg)], {key path in the file: declaration})."""
    package, includes, decls = None, [], {}
    stack: list[tuple[int, str]] = []
    in_defaults = False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("# @package"):
            package = line.split()[-1]
            continue
        if in_defaults:
            inc = _INCLUDE.match(line)
            if inc and line.lstrip().startswith("-"):
                if inc["path"] != "_self_":
                    includes.append((inc["path"], inc["pkg"]))
                continue
            in_defaults = False
        m = _KEY.match(line)
        if m is None or line.lstrip().startswith("#"):
            continue
        indent, key = len(m["indent"]), m["key"]
        if indent == 0 and key == "defaults":
            in_defaults = True
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        full = ".".join([k for _, k in stack] + [key])
        decl = _DECL.search(m["rest"])
        if decl:
            decls[full] = Declaration(decl["decl"].strip(), f"{path.relative_to(CONFIG_DIR)}:{n}")
        if not m["rest"].split("#")[0].strip():  # a mapping: its children follow
            stack.append((indent, key))
    return package, includes, decls


@functools.cache
def schema(config_dir: Path = CONFIG_DIR) -> dict[str, Declaration]:
    """Composed key path -> its declaration, over every YAML file of the config tree."""
    files = {
        p.relative_to(config_dir).with_suffix("").as_posix(): _parse_file(p)
        for p in config_dir.rglob("*.yaml")
    }
    # Where a file's keys land: its own `# @package` line, else the package its includer
    # names (`- /algo/_x@pkg`) or its includer's own package, else its group folder.
    prefix: dict[str, str] = {}
    for name, (package, _, _) in files.items():
        if package is not None:
            prefix[name] = "" if package == "_global_" else package
        elif "/" in name:
            prefix[name] = name.split("/")[0]
        else:
            prefix[name] = ""
    for name, (_, includes, _) in files.items():
        for inc, pkg in includes:
            target = inc.lstrip("/") if inc.startswith("/") else f"{name.rsplit('/', 1)[0]}/{inc}"
            if target in files and files[target][0] is None:
                prefix[target] = pkg if pkg is not None else prefix[name]
    out: dict[str, Declaration] = {}
    for name, (_, _, decls) in files.items():
        for key, decl in decls.items():
            full = f"{prefix[name]}.{key}" if prefix[name] else key
            if full in out and out[full].text != decl.text:
                raise SchemaError(
                    f"{full} is declared twice, [{out[full].text}] at {out[full].source} and "
                    f"[{decl.text}] at {decl.source}; declare it once, next to its default"
                )
            out[full] = decl
    return out


def leaves(cfg, prefix: str = "") -> dict:
    """Every leaf of a composed config (a nested dict) by its dotted path."""
    out = {}
    for k, v in cfg.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(leaves(v, f"{path}."))
        else:
            out[path] = v
    return out


def check(cfg: dict, declared: dict[str, Declaration] | None = None) -> None:
    """Checks every declared key of a composed config (a resolved, nested dict)."""
    declared = schema() if declared is None else declared
    for path, value in leaves(cfg).items():
        decl = declared.get(path)
        if decl is not None and not decl.accepts(value):
            raise SchemaError(f"{path} must be {decl.describe()}, got {value!r}")


def closest_key(key: str, known) -> str | None:
    """The known key most like `key` (for "did you mean"), or None."""
    found = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if found:
        return found[0]
    tail = key.rsplit(".", 1)[-1]
    same_tail = [k for k in known if k.rsplit(".", 1)[-1] == tail]
    return same_tail[0] if len(same_tail) == 1 else None
