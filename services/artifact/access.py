"""Who may call what on the artifact service (docs/auth.md): ArtifactService by the run's
project, ModelRegistryService by the model's project (see migration 0007)."""

from __future__ import annotations

from typing import Any

from trackd_api.artifact.v1 import artifact_pb2
from trackd_platform.access import Rule, all_of, ids, keep, names, own_project, rules_for
from trackd_platform.auth import Role

READ, WRITE, ADMIN = Role.READ, Role.WRITE, Role.ADMIN
_run = ids("run", "run_id")
_model = names("model", "name")


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
    "GetRegisteredModel": Rule(READ, _model),
    "ListRegisteredModels": Rule(READ, keep=keep("models", "name", "model")),
    "CreateModelVersion": Rule(WRITE, all_of(_model, _run)),
    "GetModelVersion": Rule(READ, _model),
    "ListModelVersions": Rule(READ, _model),
    "SetModelAlias": Rule(WRITE, _model),
    "DeleteModelAlias": Rule(WRITE, _model),
}

RULES = {**rules_for("trackd.artifact.v1.ArtifactService", ARTIFACT_RULES),
         **rules_for("trackd.artifact.v1.ModelRegistryService", REGISTRY_RULES)}
