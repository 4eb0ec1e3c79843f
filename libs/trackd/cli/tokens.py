"""`trackd tokens create|list|revoke`: API tokens of a project (docs/auth.md). With auth on, these
need an ADMIN token of the project in TRACKD_TOKEN, or the server's TRACKD_ADMIN_TOKEN."""

from __future__ import annotations

import re

import typer
from rich.console import Console
from rich.table import Table
from trackd_api.auth.v1 import auth_pb2, auth_pb2_grpc

from trackd._client import Client, default_client
from trackd.errors import TrackdError

app = typer.Typer(no_args_is_help=True, help="API tokens: per project, READ / WRITE / ADMIN.")
console = Console()
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_ROLES = {"read": auth_pb2.ROLE_READ, "write": auth_pb2.ROLE_WRITE, "admin": auth_pb2.ROLE_ADMIN}


def parse_duration(text: str) -> int:
    """Seconds in `30d`, `12h`, `90m`, `45s`, `2w` or a plain number of seconds; "" or "never" is 0."""
    if text.strip().lower() in ("", "never", "0"):
        return 0
    match = re.fullmatch(r"(\d+)\s*([smhdw]?)", text.strip().lower())
    if not match:
        raise typer.BadParameter(f"{text!r}: use e.g. 30d, 12h, 90m, 45s or never")
    return int(match[1]) * _UNITS[match[2] or "s"]


def _stub(client: Client) -> auth_pb2_grpc.TokenServiceStub:
    return auth_pb2_grpc.TokenServiceStub(client.channel("run"))


def _fail(exc: TrackdError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


@app.command("create")
def create(
    project: str = typer.Option(..., "--project", "-p", help="The project the token grants access to."),
    role: str = typer.Option("write", "--role", "-r", help="read, write or admin."),
    name: str = typer.Option("", "--name", "-n", help="A label, e.g. ci or alice-laptop."),
    expires: str = typer.Option("never", "--expires", help="Lifetime: 30d, 12h, 90m, … or never."),
) -> None:
    """Create a token and print its secret — shown this once, never stored."""
    if role.lower() not in _ROLES:
        raise typer.BadParameter(f"role {role!r}: use read, write or admin")
    client = default_client()
    request = auth_pb2.CreateTokenRequest(project=project, role=_ROLES[role.lower()], name=name,
                                          expires_in_seconds=parse_duration(expires))
    try:
        response = client.call("run", _stub(client).CreateToken, request)
    except TrackdError as exc:
        raise _fail(exc) from None
    token = response.token
    console.print(f"token {token.id} ({auth_pb2.Role.Name(token.role)[5:].lower()} on {token.project_name})"
                  + (f", expires {token.expire_time.ToDatetime():%Y-%m-%d %H:%M} UTC" if token.HasField("expire_time")
                     else ""), highlight=False)
    console.print("secret (shown once; export it as TRACKD_TOKEN):", highlight=False)
    print(response.secret)


@app.command("list")
def list_(
    project: str = typer.Option("", "--project", "-p", help="Only this project's tokens."),
    all_: bool = typer.Option(False, "--all", help="Include revoked tokens."),
) -> None:
    """Tokens (never their secrets)."""
    client = default_client()
    try:
        response = client.call("run", _stub(client).ListTokens,
                               auth_pb2.ListTokensRequest(project=project, include_revoked=all_))
    except TrackdError as exc:
        raise _fail(exc) from None
    table = Table(title="tokens")
    for column in ("id", "project", "role", "name", "created", "expires", "revoked"):
        table.add_column(column)
    for t in response.tokens:
        table.add_row(t.id, t.project_name, auth_pb2.Role.Name(t.role)[5:].lower(), t.name,
                      f"{t.create_time.ToDatetime():%Y-%m-%d %H:%M}",
                      f"{t.expire_time.ToDatetime():%Y-%m-%d %H:%M}" if t.HasField("expire_time") else "never",
                      f"{t.revoke_time.ToDatetime():%Y-%m-%d %H:%M}" if t.HasField("revoke_time") else "")
    console.print(table)


@app.command("revoke")
def revoke(token_id: str) -> None:
    """Revoke a token: every service refuses it within 5 seconds."""
    client = default_client()
    try:
        token = client.call("run", _stub(client).RevokeToken, auth_pb2.RevokeTokenRequest(token_id=token_id)).token
    except TrackdError as exc:
        raise _fail(exc) from None
    console.print(f"revoked token {token.id} ({token.name or 'unnamed'} on {token.project_name})", highlight=False)
