"""deploy/helm/triton-repo and deploy/kserve, offline: the chart lints and renders (helm-python-sdk, the
Helm SDK), and every manifest validates strictly against the Kubernetes schemas of KUBERNETES_VERSION
(kubernetes-validate), so a removed API version or a misspelled field fails here. Nothing here was run
against a cluster."""

from __future__ import annotations

import re
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

# Build Jobs: a name with '_' (DNS-1123 has none), one model with its own target and resources.
BUILD = {
    "enabled": True,
    "models": [
        "digits",
        "mobilenet_v2",
        {"name": "minilm", "target": "gpu", "resources": {"limits": {"nvidia.com/gpu": 1}}},
    ],
}
BUILD_VALUES = {**VALUES, "build": BUILD}
DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

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


def build_jobs(values: dict) -> dict[str, dict]:
    """The rendered build Jobs by name."""
    return {d["metadata"]["name"]: d for d in render(values) if d["kind"] == "Job"}


def container_of(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_the_chart_with_build_jobs_lints_without_warnings():
    report = helm.lint(CHART, BUILD_VALUES, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_build_jobs_render_only_when_enabled_and_each_is_valid_for_the_stated_kubernetes_version():
    assert build_jobs(VALUES) == {}
    assert build_jobs({**VALUES, "build": {**BUILD, "enabled": False}}) == {}
    docs = render(BUILD_VALUES)
    assert sorted(d["kind"] for d in docs) == sorted(
        ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "Service", *["Job"] * 3]
    )
    for doc in docs:
        assert validate(doc) == "1.31", (doc["kind"], doc["metadata"]["name"])
    job = next(iter(build_jobs(BUILD_VALUES).values()))
    job["spec"]["template"]["spec"]["containers"][0]["workDir"] = "/app"  # workingDir, misspelled
    with pytest.raises(kubernetes_validate.utils.ValidationError, match="workDir"):
        validate(job)


def test_build_job_names_are_dns_labels_unique_per_model():
    names = list(build_jobs(BUILD_VALUES))
    assert names == [
        "prod-triton-repo-build-digits-cpu",
        "prod-triton-repo-build-mobilenet-v2-cpu",
        "prod-triton-repo-build-minilm-gpu",
    ]
    long = [
        "a_model_with_a_name_long_enough_to_overflow_63_characters",
        "a_model_with_a_name_long_enough_to_overflow_63_characters_too",
    ]
    cut = list(build_jobs({**VALUES, "build": {"enabled": True, "models": long}}))
    assert len(set(cut)) == 2 and cut[0][:54] == cut[1][:54]  # cut alike, told apart by the hash
    for name in names + cut:
        assert DNS_1123_LABEL.fullmatch(name) and len(name) <= 63, name


def test_a_build_job_runs_the_build_into_the_servers_bucket_and_loads_it_into_the_fleet():
    jobs = build_jobs(BUILD_VALUES)
    job = jobs["prod-triton-repo-build-mobilenet-v2-cpu"]
    pod = job["spec"]["template"]["spec"]
    container = container_of(job)
    assert container["command"] == ["triton-repo"]
    assert container["args"] == [
        "build",
        "models/mobilenet_v2",
        "--repository",
        "s3://models/prod",  # what the servers read (--model-repository=s3://models/prod)
        "--target",
        "cpu",
        "--work-dir",
        "/work",
        "--server",
        "http://prod-triton-repo-pods.serving.svc:8000",
    ]
    assert container["workingDir"] == "/app" and container["image"] == "triton-repo-builder:0.1.0"
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 2
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400 and job["spec"]["activeDeadlineSeconds"] == 7200
    env = {e["name"]: e for e in container["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "triton-repo-s3", "key": key}
    assert env["AWS_REGION"]["value"] == env["AWS_DEFAULT_REGION"]["value"] == "us-east-1"
    assert env["HOME"]["value"] == env["TMPDIR"]["value"] == "/tmp"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts == {"/work": "work", "/tmp": "tmp"} and all(
        "emptyDir" in volumes[n] for n in mounts.values()
    )
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi"}}
    gpu = container_of(jobs["prod-triton-repo-build-minilm-gpu"])
    assert gpu["args"][1:6] == ["models/minilm", "--repository", "s3://models/prod", "--target", "gpu"]
    assert gpu["resources"] == {"limits": {"nvidia.com/gpu": 1}}


def test_the_admin_header_comes_from_the_admin_secret_and_only_when_one_is_set():
    env = {e["name"]: e for e in container_of(next(iter(build_jobs(BUILD_VALUES).values())))["env"]}
    assert env["TRITON_ADMIN_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "triton-repo-admin",
        "key": "admin-key",
    }
    # --admin-header's variable; Kubernetes puts the key in for $(TRITON_ADMIN_KEY), defined before it
    assert env["TRITON_REPO_ADMIN_HEADER"]["value"] == "triton-repo-admin=$(TRITON_ADMIN_KEY)"
    names = [e["name"] for e in container_of(next(iter(build_jobs(BUILD_VALUES).values())))["env"]]
    assert names.index("TRITON_ADMIN_KEY") < names.index("TRITON_REPO_ADMIN_HEADER")
    open_api = {**BUILD_VALUES, "admin": {"secretName": ""}}
    for job in build_jobs(open_api).values():
        assert not {"TRITON_ADMIN_KEY", "TRITON_REPO_ADMIN_HEADER"} & {
            e["name"] for e in container_of(job)["env"]
        }


def test_loading_into_the_fleet_can_be_turned_off_and_servers_and_arguments_added():
    build = {
        **BUILD,
        "loadIntoFleet": False,
        "servers": ["http://10.0.0.31:8000"],
        "extraArgs": ["--speed-seconds", "3"],
    }
    for job in build_jobs({**VALUES, "build": build}).values():
        args = container_of(job)["args"]
        assert args[8:] == ["--server", "http://10.0.0.31:8000", "--speed-seconds", "3"]
    quiet = {**BUILD, "loadIntoFleet": False}
    assert all(
        "--server" not in container_of(j)["args"] for j in build_jobs({**VALUES, "build": quiet}).values()
    )


def test_no_service_deployment_or_disruption_budget_selects_a_build_pod():
    docs = render(BUILD_VALUES)
    selectors = [
        d["spec"]["selector"].get("matchLabels", d["spec"]["selector"])
        for d in docs
        if d["kind"] in ("Service", "Deployment", "PodDisruptionBudget")
    ]
    assert len(selectors) == 4
    for job in (d for d in docs if d["kind"] == "Job"):
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert (
            labels["app.kubernetes.io/instance"] == "prod"
            and labels["app.kubernetes.io/component"] == "build"
        )
        for selector in selectors:
            assert not selector.items() <= labels.items(), (job["metadata"]["name"], selector)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"build": {"enabled": True}}, "build.models is empty with build.enabled"),
        ({"build": {**BUILD, "models": []}}, "build.models is empty with build.enabled"),
        ({"modelRepository": ""}, "modelRepository is required"),
        ({"storage": {"secretName": ""}}, "storage.secretName is required"),
        (
            {"build": {"enabled": True, "models": ["../etc"]}},
            r'build.models\[0\]: "../etc" is not a model folder name',
        ),
        (
            {"build": {"enabled": True, "models": [{"name": "digits", "traget": "gpu"}]}},
            'unknown key "traget"',
        ),
        ({"build": {"enabled": True, "models": [{"target": "gpu"}]}}, r"build.models\[0\]: name is required"),
        (
            {"build": {"enabled": True, "models": ["digits"], "target": "tpu"}},
            'target "tpu": choose cpu, gpu or auto',
        ),
        (
            {"build": {"enabled": True, "models": ["my_model", "my-model"]}},
            "my_model \\(target cpu\\) and my-model \\(target cpu\\) would both be the Job prod-triton-repo-build-my-model-cpu",
        ),
        (
            {"build": {"enabled": True, "models": ["digits", "digits"]}},
            "digits is listed twice for target cpu",
        ),
        (
            {"build": {"enabled": True, "models": ["minilm", {"name": "minilm", "target": "gpu"}]}},
            "minilm is listed for targets cpu and gpu; one repository serves one target",
        ),
    ],
    ids=[
        "no-models",
        "empty-models",
        "no-repository",
        "no-secret",
        "path",
        "unknown-key",
        "no-name",
        "target",
        "same-job",
        "twice",
        "two-targets",
    ],
)
def test_the_chart_refuses_build_jobs_it_cannot_run_with_one_clear_message(change, message):
    with pytest.raises(helm.errors.HelmError, match=message):
        render({**BUILD_VALUES, **change})
