"""The Helm chart's build Jobs (deploy/helm/triton-repo, build.enabled), run here as a cluster would run
them: the chart is rendered, and each Job's container command, args and env become one process, all
started at once against one SeaweedFS bucket while a real tritonserver serves it.

What stands in for the cluster: a dict for the Secrets (secretKeyRef resolved from it, $(VAR) expanded as
the kubelet does), fresh folders for each pod's emptyDir volumes (/work, /tmp), a folder holding the
models for the image's /app, this checkout's .venv for the image's `triton-repo` (the image itself is not
built here: no Docker engine), and the `triton-repo serve` started below for the fleet's Service URL (it
does not restrict its model-repository API, so the admin header the Jobs send is accepted and unused).
Nothing else of this process's environment is passed on (PATH aside): the credentials, the region and the
lease's ttl (the default) are what the rendered Job gives."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.integration import test_store_concurrency as concurrency
from tests.integration.conftest import ROOT, run_cli, start_server, write_tiny_model
from tests.seaweedfs import ACCESS_KEY, REGION, SECRET_KEY
from tests.store_invariants import leftovers, logged_publishes_kept, models_match_manifest, ready_as_manifest
from tests.unit.test_helm_chart import render

pytestmark = pytest.mark.integration
seaweed = concurrency.seaweed  # its SeaweedFS fixture, reused: one `weed mini` for this module
BUCKET = concurrency.BUCKET
PREFIX = "jobs"
MODELS = ("tiny_a", "tiny_b", "tiny_c")  # '_' in each: the Jobs' names must convert it
SECRETS = {
    "triton-repo-s3": {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
    "triton-repo-admin": {"admin-key": "a-key-the-local-server-does-not-ask-for"},
}
SERVICE_URL = "http://prod-triton-repo-pods.serving.svc:8000"  # the fleet's headless Service, as rendered
IMAGE_APP = "/app"  # the image's WORKDIR, holding models/ (deploy/builder/Dockerfile)
CLI = ROOT / ".venv" / "bin" / "triton-repo"  # the image's `triton-repo`, on its PATH
PUBLISHED = re.compile(r"^published (\S+) version (\d+)", re.M)
# the publish step's time: under the lease, and waiting for it
PUBLISH_STEP = re.compile(r"publish into s3://\S+ \(([\d.]+) s\)")


def chart_values(url: str) -> dict:
    return {
        "modelRepository": url,
        "storage": {"secretName": "triton-repo-s3", "region": REGION},
        "admin": {"secretName": "triton-repo-admin"},
        "build": {"enabled": True, "models": list(MODELS), "extraArgs": ["--speed-seconds", "1"]},
    }


def expand(text: str, env: dict[str, str]) -> str:
    """$(NAME) replaced by the variable's value, as Kubernetes does in args and env (unknown: kept)."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def container_env(container: dict, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's variables: values (earlier variables expanded), secretKeyRefs read from `secrets`;
    a missing key of an optional ref is left out, any other missing key fails, as the pod would."""
    env: dict[str, str] = {}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = expand(entry["value"], env)
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is None:
            assert ref.get("optional"), f"{entry['name']}: Secret {ref['name']} has no key {ref['key']}"
            continue
        env[entry["name"]] = value
    return env


def local_paths(pod: dict, app: Path, scratch: Path) -> dict[str, Path]:
    """The image's paths onto this machine: /app onto `app`, each emptyDir mount onto a fresh folder."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    paths = {IMAGE_APP: app}
    for mount in pod["containers"][0]["volumeMounts"]:
        assert "emptyDir" in volumes[mount["name"]], mount  # nothing else may hold state in a build pod
        paths[mount["mountPath"]] = scratch / mount["name"]
        paths[mount["mountPath"]].mkdir(parents=True)
    return paths


def on_this_machine(text: str, paths: dict[str, Path], server: str) -> str:
    for image_path, local in sorted(paths.items(), key=lambda item: -len(item[0])):
        if text == image_path or text.startswith(image_path + "/"):
            return str(local) + text[len(image_path) :]
    return text.replace(SERVICE_URL, server)


def start_job(job: dict, app: Path, scratch: Path, server: str) -> subprocess.Popen:
    """The Job's one container as a process: its command, args, env and working dir, on this machine."""
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["triton-repo"] and pod["restartPolicy"] == "Never"
    paths = local_paths(pod, app, scratch)
    env = {k: on_this_machine(v, paths, server) for k, v in container_env(container, SECRETS).items()}
    args = [on_this_machine(expand(arg, env), paths, server) for arg in container["args"]]
    env["PATH"] = f"{CLI.parent}:/usr/local/bin:/usr/bin:/bin"
    return subprocess.Popen(
        [str(CLI), *args],
        cwd=on_this_machine(container["workingDir"], paths, server),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def infer_sample(http_port: int, model: str, golden) -> None:
    """One request with the golden sample's inputs; the outputs as the build recorded them."""
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}", network_timeout=30)
    inputs = []
    for name, array in golden.inputs.items():
        tensor = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer(model, inputs)
    for name, expected in golden.outputs.items():
        np.testing.assert_allclose(result.as_numpy(name), expected, atol=1e-5, rtol=1e-4, err_msg=model)


def test_the_charts_build_jobs_run_together_publish_every_model_and_a_server_serves_them(seaweed, tmp_path):
    from triton_repo.core.golden import load_golden, sample_case
    from triton_repo.repo.store.manifest import read_store_manifest, verify_store

    began = time.monotonic()
    url = seaweed.url(BUCKET, PREFIX)
    store = concurrency.store_of(seaweed, PREFIX)
    app = tmp_path / "app"
    for name in MODELS:
        write_tiny_model(app / "models", name)
    # The fleet is up before the Jobs run (tritonserver refuses a prefix with nothing in it): a model
    # published beforehand by another builder, which the Jobs must leave alone.
    write_tiny_model(tmp_path / "earlier", "tiny_earlier")
    run_cli("build", str(tmp_path / "earlier" / "tiny_earlier"), "--repository", url,
            "--work-dir", str(tmp_path / "earlier-work"), check=True)  # fmt: skip
    _, fleet = start_server(url, tmp_path / "fleet", extra=("--exit-timeout", "3"))
    fresh, processes = None, []
    try:
        ready = time.monotonic()
        jobs = [d for d in render(chart_values(url)) if d["kind"] == "Job"]
        assert [j["metadata"]["name"] for j in jobs] == [
            f"prod-triton-repo-build-{name.replace('_', '-')}-cpu" for name in MODELS
        ]
        server = f"http://127.0.0.1:{fleet.http_port}"
        processes = [start_job(j, app, tmp_path / j["metadata"]["name"], server) for j in jobs]
        outputs = [process.communicate(timeout=300) for process in processes]
        built = time.monotonic()
        publish_seconds = [float(s) for _, said in outputs for s in PUBLISH_STEP.findall(said)]

        done = []  # what each Job printed as published, as store_invariants reads a publisher's log
        for job, process, (_, said) in zip(jobs, processes, outputs, strict=True):
            name = job["metadata"]["name"]
            assert process.returncode == 0, f"{name} exited {process.returncode}:\n{said[-3000:]}"
            printed = PUBLISHED.findall(said)
            assert printed, f"{name} printed nothing as published:\n{said}"
            assert "(loaded by the servers" in said  # the rendered --server, reached
            done += [{"model": m, "version": int(v), "publisher": name, "round": 0} for m, v in printed]
        assert {d["model"] for d in done} == {f"{name}_fp32" for name in MODELS}

        manifest = read_store_manifest(store)
        assert set(manifest["models"]) == {d["model"] for d in done} | {"tiny_earlier_fp32"}
        assert logged_publishes_kept(done, manifest) == []  # nothing a Job published was lost
        verify_store(store, manifest)  # every served object hashes to the manifest
        assert models_match_manifest(store, manifest, {}) == ([], [])  # pointers name the manifest's versions
        problems, _ = leftovers(store, manifest)
        assert problems == []  # no lease left, no version directory the manifest does not reference
        assert ready_as_manifest(fleet.http_port, manifest, "the running server") == []  # loaded by the Jobs
        report = json.loads(store.read(store.url.key("BUILD_REPORT.json")))
        assert set(report["models"]) == {*MODELS, "tiny_earlier"}  # each Job merged its section in

        _, fresh = start_server(url, tmp_path / "fresh", extra=("--exit-timeout", "3"))
        assert ready_as_manifest(fresh.http_port, manifest, "a server started on the bucket") == []
        for model, entry in sorted(manifest["models"].items()):
            data = store.read(store.url.key(model, str(entry["version"]), "golden.npz"))
            infer_sample(fresh.http_port, model, sample_case(load_golden(io.BytesIO(data))))
        finished = time.monotonic()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        for served in (fleet, fresh):
            if served is not None:
                run_cli("stop", "--work-dir", str(served.work_dir))
    print(
        f"\n{len(jobs)} build Jobs run together: {built - ready:.1f} s until all exited 0 (their publish steps, "
        f"lease waits included: {', '.join(f'{s:.1f}' for s in sorted(publish_seconds))} s); setup (an earlier "
        f"model built, the server started) {ready - began:.1f} s; checks and a fresh server "
        f"{finished - built:.1f} s; in all {finished - began:.1f} s on {os.cpu_count()} cores"
    )
