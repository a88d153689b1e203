"""deploy/helm/triton-repo and deploy/kserve, offline: the chart lints and renders (helm-python-sdk, the
Helm SDK), and every manifest validates strictly against the Kubernetes schemas of KUBERNETES_VERSION
(kubernetes-validate), so a removed API version or a misspelled field fails here. Nothing here was run
against a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from triton_repo.core.releases import read_pinned_release

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "triton-repo"
KSERVE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
KUBERNETES_VERSION = "1.31.0"
VALUES = {
    "modelRepository": "s3://models/prod",
    "storage": {"secretName": "triton-repo-s3"},
    "admin": {"secretName": "triton-repo-admin"},
}

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed; run `make install`")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed; run `make install`"
)


def render(values: dict) -> list[dict]:
    manifests = helm.Chart.load(CHART).render(values, name="prod", namespace="serving")
    return [
        doc
        for path, text in manifests.items()
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def validate(doc: dict) -> str:
    return kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_chart_lints_without_warnings():
    report = helm.lint(CHART, VALUES, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_every_rendered_manifest_is_valid_for_the_stated_kubernetes_version():
    docs = render(VALUES)
    assert sorted(d["kind"] for d in docs) == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
        "Service",
    ]
    for doc in docs:
        assert validate(doc) == "1.31", doc["kind"]
    apis = {d["kind"]: d["apiVersion"] for d in docs}
    assert apis["HorizontalPodAutoscaler"] == "autoscaling/v2" and apis["PodDisruptionBudget"] == "policy/v1"


def test_the_strict_check_catches_removed_api_versions_and_misspelled_fields():
    removed = {
        "apiVersion": "autoscaling/v2beta2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "x"},
    }
    with pytest.raises(kubernetes_validate.utils.SchemaNotFoundError):
        validate(removed)  # what Triton's own on-prem chart still uses; gone since Kubernetes 1.26
    deployment = next(d for d in render(VALUES) if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProb"] = {}
    with pytest.raises(kubernetes_validate.utils.ValidationError, match="readinessProb"):
        validate(deployment)


def test_the_deployment_serves_the_bucket_as_the_project_requires():
    deployment = next(d for d in render(VALUES) if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == f"nvcr.io/nvidia/tritonserver:{read_pinned_release(ROOT / '.env').name}-py3"
    args = container["args"]
    assert "--model-repository=s3://models/prod" in args and "--strict-readiness=true" in args
    assert "--http-restricted-api=model-repository:triton-repo-admin=$(TRITON_ADMIN_KEY)" in args
    assert "--grpc-restricted-protocol=model-repository:triton-repo-admin=$(TRITON_ADMIN_KEY)" in args
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    secrets = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e
    }
    assert secrets["AWS_ACCESS_KEY_ID"] == secrets["AWS_SECRET_ACCESS_KEY"] == "triton-repo-s3"
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/var/run/triton/models", "/tmp"}


def test_the_chart_refuses_to_render_without_a_repository_or_credentials():
    with pytest.raises(helm.errors.HelmError, match="modelRepository is required"):
        render({**VALUES, "modelRepository": ""})
    with pytest.raises(helm.errors.HelmError, match="storage.secretName is required"):
        render({**VALUES, "storage": {"secretName": ""}})


def test_the_kserve_example_uses_tritons_runtime_with_the_bucket_as_storage_uri():
    docs = list(yaml.safe_load_all(KSERVE.read_text()))
    for doc in docs:
        if doc["apiVersion"].startswith("serving.kserve.io"):
            continue  # a KServe CRD: no Kubernetes schema to check it against
        assert validate(doc) == "1.31", doc["kind"]
    service = next(d for d in docs if d["kind"] == "InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton" and model["runtime"] == "kserve-tritonserver"
    assert model["storageUri"].startswith("s3://")
    assert model["runtimeVersion"] == f"{read_pinned_release(ROOT / '.env').name}-py3"
