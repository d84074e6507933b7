"""`WebPlugin`: registers the pages, their static files and the Jinja2 engine."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar.config.app import AppConfig
from litestar.plugins import InitPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from imgdex.auth.guards import principal_of

from .access import users_mode
from .account import AccountPanelController
from .admin import AdminPanelController
from .headers import security_headers
from .organise import OrganisePagesController
from .pages import PagesController
from .sharing import SharePanelController

__all__ = ["WebPlugin"]

_HERE = Path(str(resources.files(__package__)))


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,  # a typo in a template fails the tests, not silently
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Who the request acts as, for the nav and for hiding controls a role cannot use.
    env.globals["principal_of"] = principal_of
    env.globals["users_mode"] = users_mode
    return env


class WebPlugin(InitPlugin):
    """Add to ``Litestar(plugins=[...])``: the web app served at ``/``."""

    __slots__ = ()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.extend(
            [
                PagesController,
                OrganisePagesController,
                AdminPanelController,
                AccountPanelController,
                SharePanelController,
                create_static_files_router(
                    path="/static",
                    directories=[_HERE / "static"],
                    name="web-static",
                    after_request=security_headers,
                    include_in_schema=False,
                ),
            ]
        )
        app_config.template_config = TemplateConfig(
            instance=JinjaTemplateEngine.from_environment(_environment())
        )
        return app_config
