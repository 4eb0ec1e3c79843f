"""Who may call what on the artifact service (docs/auth.md): ArtifactService by the run's
project. ModelRegistryService within the caller's own project: model names are unique per
project, and a project token names, lists and sees only its project's models (the servicer scopes
every lookup to it), so another project's model is NOT_FOUND, never PERMISSION_DENIED; the admin
reaches every project's models."""

from __future__ import annotations

from typing import Any

from trackd_api.artifact.v1 import artifact_pb2
from trackd_platform.access import Rule, all_of, ids, own_project, rules_for
from trackd_platform.auth import Role

READ, WRITE, ADMIN = Role.READ, Role.WRITE, Role.ADMIN
_run = ids("run", "run_id")


def _presign_role(request: Any) -> Role:
    """A PUT URL writes; a GET URL reads — granted only after the check, never before."""
    return WRITE if request.method == artifact_pb2.PRESIGNED_METHOD_PUT else READ


ARTIFACT_RULES = {
    "UploadArtifact": Rule(WRITE, ids("run", "header.run_id")),  # the header is the stream's first message
    "DownloadArtifact": Rule(READ, _run),
    "ListArtifacts": Rule(READ, _run),
    "StatArtifact": Rule(READ, _run),
    "DeleteArtifact": Rule(ADMIN, _run),
    "CreatePresignedUrl": Rule(_presign_role, _run),
    "CompleteDirectUpload": Rule(WRITE, _run),
}

REGISTRY_RULES = {
    "CreateRegisteredModel": Rule(WRITE, own_project),  # the model belongs to the token's project
    "GetRegisteredModel": Rule(READ, own_project),
    "ListRegisteredModels": Rule(READ, own_project),
    "CreateModelVersion": Rule(WRITE, all_of(own_project, _run)),  # the run is of the token's project too
    "GetModelVersion": Rule(READ, own_project),
    "ListModelVersions": Rule(READ, own_project),
    "SetModelAlias": Rule(WRITE, own_project),
    "DeleteModelAlias": Rule(WRITE, own_project),
    "UpdateRegisteredModel": Rule(WRITE, own_project),
    "RenameRegisteredModel": Rule(WRITE, own_project),
    "UpdateModelVersion": Rule(WRITE, own_project),
    "DeleteRegisteredModel": Rule(ADMIN, own_project),  # deletes are the admin's, as DeleteArtifact
    "DeleteModelVersion": Rule(ADMIN, own_project),
}

RULES = {**rules_for("trackd.artifact.v1.ArtifactService", ARTIFACT_RULES),
         **rules_for("trackd.artifact.v1.ModelRegistryService", REGISTRY_RULES)}
