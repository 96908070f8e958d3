"""Which HTTP request a statement belongs to, whatever the server: one ContextVar per request.

Standard library only and Python 3.8+ syntax (it runs in the target's own interpreter); loaded
by ``perfagents_sqlcapture.install``. The value of ``request`` is a holder tuple
``(request_id, method, path, scope, name)``: ``scope`` is the ASGI scope (its Starlette
``route`` gives the path template when the record is written) or None; ``name`` is the Locust
request name the load generator sent in the ``X-Perfagents-Request`` header
(tasks/load/listener.py), percent-decoded, or None when the request carried none.

Where the context is set, exactly once per request (an inner wrapper sees it set and passes):
- ASGI: uvicorn's ``Config.load`` wraps the loaded app;
- WSGI servers: gunicorn workers (sync, gthread, gevent: ``Worker.load_wsgi``), waitress
  (``create_server``) and werkzeug (``make_server``, so ``flask run`` and ``app.run``) wrap
  the application they serve;
- WSGI frameworks under any other server: ``Flask.wsgi_app`` and Django's ``WSGIHandler``.

Thread pools: ``concurrent.futures.ThreadPoolExecutor.submit`` runs the submitted function in a
copy of the submitter's context when a request is set, so statements an app runs through
``loop.run_in_executor`` or its own executor keep their request (Starlette's and asgiref's
thread hand-offs copy the context already). A WSGI response iterated after the app returned
(streaming) runs outside the request: its statements fall back to thread+time attribution.
"""

import contextvars
import itertools
import os

MARK_HEADER = "X-Perfagents-Request"  # tasks/load/listener.py sends it
_ASGI_HEADER = MARK_HEADER.lower().encode("latin-1")
_WSGI_KEY = "HTTP_" + MARK_HEADER.upper().replace("-", "_")
MAX_NAME_CHARS = 200

request = contextvars.ContextVar("perfagents_request", default=None)
_ids = itertools.count(1)


def _name(raw):
    """The Locust name from a header value: percent-decoded, bounded; None when absent or empty."""
    if not raw:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    from urllib.parse import unquote

    return unquote(raw)[:MAX_NAME_CHARS] or None


def _next_id():
    return f"{os.getpid()}-{next(_ids)}"


class ASGIRequestContext:
    """ASGI middleware: sets the request holder for each HTTP request, nothing else."""

    _perfagents = True

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or request.get() is not None:
            return await self.app(scope, receive, send)
        name = None
        for key, value in scope.get("headers") or ():
            if key == _ASGI_HEADER:
                name = _name(value)
                break
        token = request.set((_next_id(), scope.get("method"), scope.get("path"), scope, name))
        try:
            return await self.app(scope, receive, send)
        finally:
            request.reset(token)


class WSGIRequestContext:
    """WSGI middleware: sets the request holder while the application runs."""

    _perfagents = True

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if request.get() is not None:
            return self.app(environ, start_response)
        path = (environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "")
        holder = (_next_id(), environ.get("REQUEST_METHOD"), path or None, None, _name(environ.get(_WSGI_KEY)))
        token = request.set(holder)
        try:
            return self.app(environ, start_response)
        finally:
            request.reset(token)

    def __getattr__(self, name):  # servers and tests may look at the wrapped app's attributes
        return getattr(self.app, name)


def _wrap_wsgi(app):
    if app is None or getattr(app, "_perfagents", False):
        return app
    return WSGIRequestContext(app)


def _marked(function):
    function._perfagents = True
    return function


def _patched(owner, attr, make):
    """Replace ``owner.attr`` with ``make(original)`` once."""
    original = getattr(owner, attr, None)
    if original is None or getattr(original, "_perfagents", False):
        return
    setattr(owner, attr, _marked(make(original)))


def patch_uvicorn_config(module):
    def make(original):
        def load(self):
            original(self)
            if not getattr(self.loaded_app, "_perfagents", False):
                self.loaded_app = ASGIRequestContext(self.loaded_app)
        return load

    _patched(module.Config, "load", make)


def patch_gunicorn_worker(module):
    def make(original):
        def load_wsgi(self):
            original(self)
            self.wsgi = _wrap_wsgi(self.wsgi)
        return load_wsgi

    _patched(module.Worker, "load_wsgi", make)


def patch_waitress_server(module):
    def make(original):
        def create_server(application, *args, **kwargs):
            return original(_wrap_wsgi(application), *args, **kwargs)
        return create_server

    _patched(module, "create_server", make)


def patch_werkzeug_serving(module):
    def make(original):
        def make_server(host, port, app, *args, **kwargs):
            return original(host, port, _wrap_wsgi(app), *args, **kwargs)
        return make_server

    _patched(module, "make_server", make)


def _wsgi_method(original):
    def call(self, environ, start_response):
        return WSGIRequestContext(lambda e, s: original(self, e, s))(environ, start_response)
    return call


def patch_flask_app(module):
    _patched(module.Flask, "wsgi_app", _wsgi_method)


def patch_django_wsgi(module):
    _patched(module.WSGIHandler, "__call__", _wsgi_method)


def patch_thread_pool(module):
    def make(original):
        def submit(self, fn, *args, **kwargs):
            if request.get() is None:
                return original(self, fn, *args, **kwargs)
            return original(self, contextvars.copy_context().run, fn, *args, **kwargs)
        return submit

    _patched(module.ThreadPoolExecutor, "submit", make)


HOOKS = {
    "uvicorn.config": patch_uvicorn_config,
    "gunicorn.workers.base": patch_gunicorn_worker,
    "waitress.server": patch_waitress_server,
    "werkzeug.serving": patch_werkzeug_serving,
    "flask.app": patch_flask_app,
    "django.core.handlers.wsgi": patch_django_wsgi,
    "concurrent.futures.thread": patch_thread_pool,
}
