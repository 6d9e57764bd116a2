"""The jinja2 environment chat templates run in: the immutable sandbox (no Python internals, no
mutation of the inputs) plus a budget of work and size for each render, because the template
comes from the model file and a sandbox alone bounds neither: a nested `range` loop runs for
ever, `'a' * 10**10` asks for 10 GB, `tojson(indent=10**8)` for 6 GB.

Every render gets a RenderBudget (a deadline and a number of characters) and every place where a
template can spend time or memory charges it, in the rendering thread, as rendering proceeds (no
watchdog thread, nothing outlives the call):

- each iteration of every `for` loop, each call (functions, methods, macros, `loop()`), each
  filter and test, and each `*`, `**`, `+`, `%`, `//` ticks the clock. Between two ticks the work
  is bounded, so the deadline holds to within milliseconds;
- operations whose result size comes from an argument are checked *before* they run (`*` on
  sequences, `**`, `%`-formatting widths, str.center/ljust/rjust/zfill/expandtabs/join/replace/
  format, int.to_bytes, the center/indent/format/join/replace/wordwrap/batch/slice/tojson/lipsum
  filters); every value a call, filter or operator returns is weighed after it runs, so no value
  larger than the budget survives to be amplified further; str.translate/maketrans are refused;
- everything a template writes (to the result, a `{% set %}` block or a macro's output) and every
  `~` concatenation is counted against the budget.

The hooks are put in by rewriting the parsed template (ChatTemplateEnvironment._parse): loop
iterables, output nodes and `~` become calls of _edgert_limit_* globals, which a template may
not redefine. The rewrite also keeps jinja from folding constant expressions at compile time,
when no budget is running. Limits default to LIMIT_SECONDS and max(LIMIT_CHARS, 8 x the
characters of the messages); ChatTemplate takes others.
"""
from __future__ import annotations

import contextvars
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from .errors import ChatTemplateError

LIMIT_SECONDS = 2.0           # a real chat template renders in about a millisecond
LIMIT_CHARS = 1 << 20         # characters of output and of any value, at least
INPUT_FACTOR = 8              # ... or this many times the characters of the messages
MAX_TEMPLATE_CHARS = 256 * 1024   # real templates are under 30 KB
MAX_INT_BITS = 1 << 16        # integers a template may make (about 20,000 digits)
MAX_TOJSON_INDENT = 16
MAX_SLOW_FILTER_INPUT = 64 * 1024  # characters striptags/urlize/wordwrap/wordcount may scan

_HOOK_PREFIX = "_edgert_limit_"


@dataclass
class RenderBudget:
    seconds: float
    chars: int
    deadline: float = 0.0
    written: int = 0

    def start(self) -> "RenderBudget":
        self.deadline = time.monotonic() + self.seconds
        return self

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise ChatTemplateError(f"the chat template from the model file exceeded its limit of "
                                    f"{self.seconds:g} s of rendering; the template is broken or hostile")

    def too_big(self, size: int, what: str) -> ChatTemplateError:
        return ChatTemplateError(f"the chat template from the model file exceeded its limit of "
                                 f"{self.chars:,} characters: {what} would hold about {size:,}")

    def check_size(self, size: int, what: str) -> None:
        if size > self.chars:
            raise self.too_big(size, what)

    def check_value(self, value: Any, what: str) -> Any:
        size = weight(value, self.chars)
        if size > self.chars:
            raise self.too_big(size, what)
        return value

    def write(self, n: int) -> None:
        # everything written anywhere (result, set-blocks, macro output) shares 4 x the budget
        self.written += n
        if self.written > 4 * self.chars:
            raise self.too_big(self.written, "the text the template wrote")


_BUDGET: contextvars.ContextVar[Optional[RenderBudget]] = contextvars.ContextVar("edgert_template_budget",
                                                                                 default=None)


def current_budget() -> RenderBudget:
    b = _BUDGET.get()
    if b is None:
        raise ChatTemplateError("a chat template runs only inside ChatTemplate.render")
    return b


def run_with_budget(budget: RenderBudget, fn: Callable[[], Any]) -> Any:
    token = _BUDGET.set(budget.start())
    try:
        return fn()
    finally:
        _BUDGET.reset(token)


def weight(value: Any, limit: int) -> int:
    """About how many characters `value` stands for when written out (strings by length,
    containers by their contents, each reference counted), stopping once past `limit`."""
    total, stack = 0, [value]
    while stack and total <= limit:
        v = stack.pop()
        if isinstance(v, (str, bytes, bytearray)):
            total += len(v) + 1
        elif isinstance(v, bool) or v is None:
            total += 1
        elif isinstance(v, int):
            total += v.bit_length() // 3 + 1
        elif isinstance(v, dict):
            total += 1
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple, set, frozenset)):
            total += 1
            stack.extend(v)
        else:
            total += 1
    return total


# -- operators ---------------------------------------------------------------------------------------

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_FIELD = re.compile(r"\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}")


def _check_percent_format(b: RenderBudget, fmt: str, args: Any) -> None:
    for m in _PERCENT_SPEC.finditer(fmt):
        for g in m.groups():
            if g and g != "*" and (len(g) > 9 or int(g) > b.chars):
                raise b.too_big(int(g) if len(g) <= 9 else 10 ** len(g), "a %-format field")
            if g == "*":
                for a in (args if isinstance(args, tuple) else (args,)):
                    if isinstance(a, int) and abs(a) > b.chars:
                        raise b.too_big(abs(a), "a %-format field")


def _check_brace_format(b: RenderBudget, fmt: str, args: Iterable[Any]) -> None:
    for m in _BRACE_FIELD.finditer(fmt):
        spec = m.group(0)
        for digits in re.findall(r"\d+", spec.partition(":")[2]):
            if len(digits) > 9 or int(digits) > b.chars:
                raise b.too_big(10 ** len(digits), "a format field")
        if spec.count("{") > 1:  # a width taken from the arguments
            for a in args:
                if isinstance(a, int) and not isinstance(a, bool) and abs(a) > b.chars:
                    raise b.too_big(abs(a), "a format field")


def _check_binop(b: RenderBudget, op: str, left: Any, right: Any) -> None:
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int):
                b.check_size(weight(seq, b.chars) * max(n, 0), "a repeated sequence")
        if isinstance(left, int) and isinstance(right, int) and \
                left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise b.too_big(left.bit_length() + right.bit_length(), "an integer (bits)")
    elif op == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1 and \
                right * left.bit_length() > MAX_INT_BITS:
            raise b.too_big(right * left.bit_length(), "an integer power (bits)")
    elif op == "+":
        if isinstance(left, (str, bytes, list, tuple)) and isinstance(right, (str, bytes, list, tuple)):
            b.check_size(weight(left, b.chars) + weight(right, b.chars), "a concatenation")
    elif op == "%":
        if isinstance(left, (str, bytes)):
            _check_percent_format(b, left if isinstance(left, str) else left.decode("latin-1"), right)


# -- calls: functions and methods --------------------------------------------------------------------

_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill"}
_REFUSED_METHODS = {"translate", "maketrans"}


def _check_call(b: RenderBudget, obj: Any, args: tuple, kwargs: dict) -> None:
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    wrapped = getattr(obj, "__wrapped__", None)  # the sandbox's str.format wrapper
    if wrapped is not None and isinstance(getattr(wrapped, "__self__", None), str) and name in ("format", "format_map"):
        values = list(args) + list(kwargs.values())
        if name == "format_map" and args and isinstance(args[0], dict):
            values = list(args[0].values())
        _check_brace_format(b, wrapped.__self__, values)
        return
    if isinstance(owner, (str, bytes, bytearray)):
        if name in _REFUSED_METHODS:
            raise ChatTemplateError(f"the chat template from the model file calls str.{name}, which chat "
                                    "templates may not use")
        if name in _WIDTH_METHODS and args and isinstance(args[0], int):
            b.check_size(args[0], f"str.{name}")
        elif name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            if isinstance(size, int):
                b.check_size(len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * size,
                             "str.expandtabs")
        elif name == "replace" and len(args) >= 2:
            old, new = args[0], args[1]
            if isinstance(old, type(owner)) and isinstance(new, type(owner)):
                hits = owner.count(old) if old else len(owner) + 1
                if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
                    hits = min(hits, args[2])
                b.check_size(len(owner) + hits * len(new), "str.replace")
        elif name == "join" and args:
            items = args[0]
            n = len(items) if isinstance(items, (list, tuple, str, bytes, dict)) else 0
            b.check_size(weight(items, b.chars) + len(owner) * n, "str.join")
        elif name in ("format", "format_map") and isinstance(owner, str):
            _check_brace_format(b, owner, list(args) + list(kwargs.values()))
    elif isinstance(owner, int) and name == "to_bytes":
        n = args[0] if args else kwargs.get("length", 1)
        if isinstance(n, int):
            b.check_size(n, "int.to_bytes")


# -- filters -----------------------------------------------------------------------------------------

def _text_len(value: Any) -> int:
    return len(value) if isinstance(value, str) else weight(value, 1 << 62)


def _filter_precheck(b: RenderBudget, name: str, args: tuple, kwargs: dict) -> None:
    """args are the filter's own arguments with the filtered value first (after any
    context/environment argument jinja passes)."""
    value, rest = (args[0] if args else None), args[1:]

    def arg(i: int, key: str, default: Any) -> Any:
        return rest[i] if len(rest) > i else kwargs.get(key, default)
    if name == "center":
        width = arg(0, "width", 80)
        if isinstance(width, int):
            b.check_size(max(width, _text_len(value)), "the center filter")
    elif name == "indent":
        width = arg(0, "width", 4)
        pad = width if isinstance(width, int) else len(width) if isinstance(width, str) else 0
        lines = str(value).count("\n") + 1 if isinstance(value, str) else 1
        b.check_size(_text_len(value) + lines * max(pad, 0), "the indent filter")
    elif name == "format" and isinstance(value, str):
        _check_percent_format(b, value, tuple(rest) or kwargs)
    elif name == "join":
        sep = arg(0, "d", "")
        if isinstance(value, (list, tuple, str)):
            n = len(value)
            b.check_size(weight(value, b.chars) + n * (len(sep) if isinstance(sep, str) else 0), "the join filter")
    elif name == "replace" and isinstance(value, str):
        old, new = arg(0, "old", ""), arg(1, "new", "")
        if isinstance(old, str) and isinstance(new, str):
            hits = value.count(old) if old else len(value) + 1
            b.check_size(len(value) + hits * len(new), "the replace filter")
    elif name in ("wordwrap", "striptags", "urlize", "wordcount"):
        # regex/textwrap work grows faster than the input on some inputs: keep inputs modest
        if isinstance(value, str) and len(value) > MAX_SLOW_FILTER_INPUT:
            raise b.too_big(len(value), f"the input of the {name} filter (its limit is "
                                        f"{MAX_SLOW_FILTER_INPUT:,})")
        if name == "wordwrap":
            wrap = arg(2, "wrapstring", None)
            width = arg(0, "width", 79)
            if isinstance(value, str) and isinstance(width, int):
                lines = len(value) // max(width, 1) + value.count(" ") + 1
                b.check_size(len(value) + lines * (len(wrap) if isinstance(wrap, str) else 1), "the wordwrap filter")
    elif name in ("batch", "slice"):
        n = arg(0, "linecount" if name == "batch" else "slices", 1)
        if isinstance(n, int):
            b.check_size(n, f"the {name} filter")
    elif name == "tojson":
        indent = arg(1, "indent", None)
        if isinstance(indent, int) and not isinstance(indent, bool) and indent > MAX_TOJSON_INDENT or \
                isinstance(indent, str) and len(indent) > MAX_TOJSON_INDENT:
            raise ChatTemplateError(f"the chat template from the model file exceeded its limit of "
                                    f"{MAX_TOJSON_INDENT} for tojson's indent (got {str(indent)[:20]})")
        if indent:
            depth_items = _depth_and_items(value)
            per_line = indent if isinstance(indent, int) else len(indent)
            b.check_size(weight(value, b.chars) + depth_items[0] * depth_items[1] * per_line, "tojson's output")


def _depth_and_items(value: Any) -> tuple[int, int]:
    depth, items, stack = 0, 0, [(value, 1)]
    while stack and items < 1 << 22:
        v, d = stack.pop()
        depth = max(depth, d)
        items += 1
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend((x, d + 1) for x in v)
    return depth, items


def _bounded_filter(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    import functools
    from jinja2.utils import _PassArg
    skip = 1 if _PassArg.from_obj(f) is not None else 0  # context / eval context / environment

    @functools.wraps(f)
    def run(*args: Any, **kwargs: Any) -> Any:
        b = current_budget()
        b.tick()
        if name == "join" and len(args) > skip:
            # a generator's items can only be weighed once they exist
            args = args[:skip] + (_materialize(b, args[skip]),) + args[skip + 1:]
        _filter_precheck(b, name, args[skip:], kwargs)
        return b.check_value(f(*args, **kwargs), f"the result of the {name} filter")
    return run


def _materialize(b: RenderBudget, value: Any) -> Any:
    """A lazy iterable as a list, counting the items as they come (each was weighed when made)."""
    if isinstance(value, (str, bytes, list, tuple, dict)) or not hasattr(value, "__iter__"):
        return value
    out, size = [], 0
    for item in value:
        b.tick()
        size += weight(item, b.chars)
        b.check_size(size, "the items to join")
        out.append(item)
    return out


def _bounded_test(f: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(f)
    def run(*args: Any, **kwargs: Any) -> Any:
        current_budget().tick()
        return f(*args, **kwargs)
    return run


def _tojson(value: Any, ensure_ascii: bool = False, indent: Optional[int] = None,
            separators: Optional[tuple[str, str]] = None, sort_keys: bool = False) -> str:
    # transformers' tojson: no HTML escaping and no key sorting, which tool-calling templates expect.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


# -- the hooks the rewritten template calls ----------------------------------------------------------

def _loop_hook(iterable: Any) -> Iterator[Any]:
    b = current_budget()
    for item in iterable:
        b.tick()
        yield item


def _out_hook(value: Any) -> str:
    b = current_budget()
    text = value if isinstance(value, str) else str(value)
    b.tick()
    b.write(len(text))
    return text


def _concat_hook(*parts: Any) -> str:
    b = current_budget()
    texts = [p if isinstance(p, str) else str(p) for p in parts]
    b.check_size(sum(map(len, texts)), "a ~ concatenation")
    return "".join(texts)


_HOOKS = {_HOOK_PREFIX + "loop": _loop_hook, _HOOK_PREFIX + "out": _out_hook,
          _HOOK_PREFIX + "concat": _concat_hook}


class _InsertLimits(NodeTransformer):
    def __init__(self, environment: jinja2.Environment) -> None:
        self.environment = environment

    def _call(self, hook: str, args: list[nodes.Expr], like: nodes.Node) -> nodes.Call:
        call = nodes.Call(nodes.Name(_HOOK_PREFIX + hook, "load"), args, [], None, None)
        call.set_lineno(like.lineno or 1)
        call.set_environment(self.environment)
        return call

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._call("loop", [node.iter], node)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [self._call("out", [child], child) for child in node.nodes]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return self._call("concat", list(node.nodes), node)


class ChatTemplateEnvironment(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment + the Hugging Face extras + the budget hooks above."""

    intercepted_binops = frozenset(["*", "**", "+", "%", "//"])

    def __init__(self, globals_: dict[str, Any]) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"],
                         optimized=False)
        self.filters["tojson"] = _tojson
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.tests = {name: _bounded_test(f) for name, f in self.tests.items()}
        self.globals.update(globals_)
        self.globals.update(_HOOKS)
        lipsum = self.globals.get("lipsum")
        if lipsum is not None:
            self.globals["lipsum"] = _bounded_lipsum(lipsum)

    def _parse(self, source: str, name: Optional[str], filename: Optional[str]) -> nodes.Template:
        if len(source) > MAX_TEMPLATE_CHARS:
            raise ChatTemplateError(f"the chat template from the model file has {len(source):,} characters, "
                                    f"more than the limit of {MAX_TEMPLATE_CHARS:,}")
        tree = super()._parse(source, name, filename)
        for n in tree.find_all(nodes.Name):
            if n.name.startswith(_HOOK_PREFIX) and n.ctx != "load":
                raise ChatTemplateError(f"the chat template from the model file assigns {n.name}, a name "
                                        "reserved for edgert's limits")
        return _InsertLimits(self).visit(tree)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        b = current_budget()
        b.tick()
        _check_binop(b, operator, left, right)
        return b.check_value(super().call_binop(context, operator, left, right),
                             f"the result of {operator}")

    def is_safe_callable(self, obj: Any) -> bool:
        if getattr(obj, "__name__", "") in _REFUSED_METHODS and \
                isinstance(getattr(obj, "__self__", None), (str, bytes, bytearray, type)):
            return False
        return super().is_safe_callable(obj)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        b = current_budget()
        b.tick()
        if getattr(__obj, "__name__", "") == "join" and args and \
                isinstance(getattr(__obj, "__self__", None), (str, bytes)):
            args = (_materialize(b, args[0]),) + args[1:]
        _check_call(b, __obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if any(__obj is hook for hook in _HOOKS.values()):
            return result
        return b.check_value(result, f"the result of {getattr(__obj, '__name__', 'a call')}")


def _bounded_lipsum(lipsum: Callable[..., str]) -> Callable[..., str]:
    def run(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
        b = current_budget()
        if isinstance(n, int) and isinstance(max, int):
            b.check_size(n * max * 12, "lipsum")
        return lipsum(n, html, min, max)
    return run
