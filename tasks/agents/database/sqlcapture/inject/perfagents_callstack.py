"""The call stack of the target's own code at a captured statement (its call site).

Standard library only and Python 3.8+ syntax (it runs in the target's own interpreter);
loaded by ``perfagents_sqlcapture.install``, never imported on its own.

``collect_stack()`` returns up to MAX_STACK_FRAMES ``module:qualname:line`` strings, innermost
first, starting two frames above itself (its caller's caller: the capture's timing wrapper)
and looking at MAX_STACK_WALK frames at most. It leaves out this capture (any file in this
folder), the standard library, site-packages / dist-packages and LIBRARY_MODULES
(frameworks, drivers), also when they are installed elsewhere; comprehension frames fold into
the function around them; ``__main__`` is named after ``__spec__`` when run with ``-m``.
Each code object's verdict (its ``module:qualname``, or skipped) is cached, up to
MAX_CODE_CACHE of them, so a repeated call site costs a dict lookup per frame.
"""

import os
import sys

MAX_STACK_FRAMES = 6  # own frames kept per stack, innermost first
MAX_STACK_WALK = 80  # frames looked at per stack, own or not
MAX_CODE_CACHE = 20000  # code objects whose verdict (own frame name, or skipped) is cached
# top-level packages whose frames are never the target's own code (also when not in site-packages)
LIBRARY_MODULES = frozenset({
    "perfagents_sqlcapture", "perfagents_pgcapture", "perfagents_callstack", "perfagents_capturelog",
    "sitecustomize", "sqlite3", "psycopg", "psycopg2", "psycopg_pool", "asyncpg", "aiosqlite", "sqlalchemy",
    "databases", "starlette", "fastapi", "uvicorn", "gunicorn", "anyio", "sniffio", "asyncio", "uvloop", "h11",
    "httptools", "concurrent", "threading", "contextlib", "django", "flask", "werkzeug", "asgiref",
    "opentelemetry", "wrapt", "_pytest", "pluggy",
})
COMPREHENSIONS = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})

_code_names = {}  # type: dict[int, tuple]  # id(code) -> (code, "module:qualname" or None when skipped)
_getframe = sys._getframe
_HERE = os.path.dirname(os.path.abspath(__file__))
_STDLIB = tuple(sorted({os.path.dirname(os.__file__), os.path.realpath(os.path.dirname(os.__file__))}))
_THIRD_PARTY_DIRS = ("site-packages", "dist-packages")


def clear_cache():
    """Forget every code object's verdict (in a forked child)."""
    _code_names.clear()


def _frame_name(frame, code):
    """``module:qualname`` of a frame of the target's own code, None for any other frame."""
    if code.co_name in COMPREHENSIONS:
        return None  # folds into the function around it, the next frame out
    filename = code.co_filename
    if filename.startswith("<frozen") or filename.startswith(_HERE) or filename.startswith(_STDLIB):
        return None
    if any(part in filename for part in _THIRD_PARTY_DIRS):
        return None
    f_globals = frame.f_globals
    module = f_globals.get("__name__") or "?"
    if module == "__main__":  # ``python -m pkg.mod``: the module's real name
        spec = f_globals.get("__spec__")
        module = getattr(spec, "name", None) or module
    if module.partition(".")[0] in LIBRARY_MODULES:
        return None
    return module + ":" + (getattr(code, "co_qualname", None) or code.co_name)


def collect_stack():
    """The target's own frames calling this: ``module:qualname:line``, innermost first (capture frames skipped)."""
    frame = _getframe(2)
    out = []
    walked = 0
    while frame is not None and walked < MAX_STACK_WALK:
        code = frame.f_code
        cached = _code_names.get(id(code))
        if cached is not None and cached[0] is code:
            name = cached[1]
        else:
            name = _frame_name(frame, code)
            if len(_code_names) < MAX_CODE_CACHE:
                _code_names[id(code)] = (code, name)  # holding ``code`` keeps its id from being reused
        if name is not None:
            out.append(name + ":" + str(frame.f_lineno))
            if len(out) >= MAX_STACK_FRAMES:
                break
        frame = frame.f_back
        walked += 1
    return out
