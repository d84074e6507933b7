"""``imgdex users ...`` and the start-up check of ``imgdex serve`` in the open mode."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import sys
from collections.abc import Callable

from imgdex.config import Config
from imgdex.errors import ConfigError, ImgdexError

__all__ = ["add_users_parser", "check_bind"]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(config: Config, host: str) -> None:
    """`auth.mode: none` serves everyone who can connect: only on loopback."""
    if config.auth.mode == "none" and not _loopback(host):
        raise ConfigError(
            f"auth.mode is 'none' (no logins) but the server would listen on {host}: "
            "anyone on the network could upload and delete. Create the first admin with "
            "`imgdex users create NAME --role admin`, set `auth: {mode: users}` in the "
            "config, then start again (or bind to 127.0.0.1)"
        )


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ImgdexError("the passwords differ", code="password_mismatch")
    return first


def _service(args: argparse.Namespace, config_of: Callable[[argparse.Namespace], Config]) -> object:
    from imgdex.auth.service import AuthService
    from imgdex.catalog import Catalog

    config = config_of(args)
    config.data_path.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(config.data_path / "imgdex.db")
    return AuthService(catalog.users, config.auth, None)


def cmd_users(args: argparse.Namespace, config_of: Callable[[argparse.Namespace], Config]) -> int:
    from imgdex.auth.service import AuthService

    service = _service(args, config_of)
    assert isinstance(service, AuthService)
    actor = "cli"
    try:
        if args.action == "create":
            user = service.create_user(args.name, _password(args), args.role, actor)
            print(f"created {user.username} ({user.role})")
        elif args.action == "list":
            for u in service.store.list_users():
                state = "disabled" if u.disabled else "active"
                print(f"{u.username:<24} {u.role:<7} {state:<8} created {u.created_at}")
        elif args.action == "set-role":
            user = service.update_user(args.name, actor, role=args.role)
            print(f"{user.username} is now {user.role}")
        elif args.action == "disable":
            service.update_user(args.name, actor, disabled=not args.enable)
            print(f"{args.name} {'enabled' if args.enable else 'disabled (sessions ended)'}")
        elif args.action == "reset-password":
            service.update_user(args.name, actor, password=_password(args))
            print(f"password of {args.name} changed (sessions ended)")
    except ImgdexError as exc:
        print(f"imgdex users: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        service.store.engine.close()
    return 0


def add_users_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    config_of: Callable[[argparse.Namespace], Config],
) -> None:
    """The ``users`` subcommand (works on the data directory; no server needed)."""
    users = sub.add_parser("users", help="manage users (auth.mode: users)")
    users.add_argument("--config")
    users.add_argument("--data-dir")
    actions = users.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a user (password prompted)")
    create.add_argument("name")
    create.add_argument("--role", choices=["viewer", "editor", "admin"], default="viewer")
    create.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    actions.add_parser("list", help="list users")
    role = actions.add_parser("set-role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=["viewer", "editor", "admin"])
    disable = actions.add_parser("disable", help="disable a user (ends their sessions)")
    disable.add_argument("name")
    disable.add_argument("--enable", action="store_true", help="enable again instead")
    reset = actions.add_parser("reset-password", help="set a new password (prompted)")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    users.set_defaults(func=lambda args: cmd_users(args, config_of))
