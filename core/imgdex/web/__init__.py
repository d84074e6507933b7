"""The web app: server-rendered pages (Jinja2 + htmx + small ES modules) at ``/``.

Everything it needs ships in this package (templates/, static/); nothing is fetched from
another origin and nothing is built with Node. `WebPlugin` adds the pages, the static
files and the template engine to the Litestar app.
"""

from .plugin import WebPlugin

__all__ = ["WebPlugin"]
