"""The TokenService servicer: API tokens of a project (docs/auth.md). The access table
(services/run/access.py) has already checked ADMIN on the project."""

from __future__ import annotations

from trackd_api.auth.v1 import auth_pb2, auth_pb2_grpc
from trackd_platform.auth import Role, current_principal
from trackd_platform.errors import InvalidArgument
from trackd_platform.ids import parse_id
from trackd_platform.rpc_types import Context
from trackd_platform.timestamps import timestamp
from trackd_platform.tokens import Token, TokenStore


def token_to_proto(token: Token) -> auth_pb2.Token:
    return auth_pb2.Token(
        id=token.id.hex, project_id=token.project_id.hex, project_name=token.project_name, name=token.name,
        role=f"ROLE_{token.role.name}", create_time=timestamp(token.created_at),
        expire_time=timestamp(token.expires_at), revoke_time=timestamp(token.revoked_at))


class TokenServicer(auth_pb2_grpc.TokenServiceServicer):
    def __init__(self, store: TokenStore) -> None:
        self._store = store

    async def CreateToken(self, request: auth_pb2.CreateTokenRequest, context: Context) -> auth_pb2.CreateTokenResponse:
        if not request.project:
            raise InvalidArgument("project is required")
        if request.role == auth_pb2.ROLE_UNSPECIFIED:
            raise InvalidArgument("role is required: ROLE_READ, ROLE_WRITE or ROLE_ADMIN")
        token, secret = await self._store.create(request.project, Role.parse(request.role), request.name,
                                                 request.expires_in_seconds)
        return auth_pb2.CreateTokenResponse(token=token_to_proto(token), secret=secret)

    async def ListTokens(self, request: auth_pb2.ListTokensRequest, context: Context) -> auth_pb2.ListTokensResponse:
        # empty project: every project for the global admin; the access check narrowed it to the
        # caller's own project for a project token
        tokens = await self._store.list(request.project, include_revoked=request.include_revoked)
        return auth_pb2.ListTokensResponse(tokens=[token_to_proto(t) for t in tokens])

    async def RevokeToken(self, request: auth_pb2.RevokeTokenRequest, context: Context) -> auth_pb2.RevokeTokenResponse:
        token = await self._store.revoke(parse_id("token_id", request.token_id))
        return auth_pb2.RevokeTokenResponse(token=token_to_proto(token))

    async def WhoAmI(self, request: auth_pb2.WhoAmIRequest, context: Context) -> auth_pb2.WhoAmIResponse:
        principal = current_principal.get()
        if principal.admin or principal.project_id is None:
            return auth_pb2.WhoAmIResponse(admin=True, role=auth_pb2.ROLE_ADMIN)
        return auth_pb2.WhoAmIResponse(
            project_id=principal.project_id.hex, project_name=await self._store.project_name(principal.project_id),
            role=f"ROLE_{principal.role.name}")
