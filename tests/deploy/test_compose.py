"""docker-compose.yml and the Dockerfile, checked without a Docker engine: every command is a real `ades` command
line, every ADES_* name is a Settings field (with a value Settings accepts), every image is pinned, and the pieces
that must agree (CORS origin and Elasticvue's port, Elasticvue's cluster URI and Elasticsearch's port, no shared
volume, outputs in the bucket, the scheduler address) do. The server listens beyond loopback only with auth on (its
tokens from a compose secret), and nothing else is published beyond the host's loopback. `docker compose config`
runs too where Docker Compose exists."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ades.cli import build_parser
from ades.config import Settings
from ades.serve import ServeRefused, check_bind

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SETTING_NAMES = {f"ADES_{name.upper()}" for name in Settings.model_fields}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def dockerfile_instructions(name: str) -> list[str]:
    """Arguments of every `name` instruction of the final stage (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    final = text.split("\nFROM ")[-1]
    return [line.split(None, 1)[1] for line in final.splitlines() if line.upper().startswith(f"{name} ")]


def ades_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if "build" in s}


def parse_ades(argv: list[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on an unknown command or option
        pytest.fail(f"`ades {' '.join(argv)}` is not a valid ades command line (exit {exit_.code})")


def test_the_image_runs_ades_as_a_non_root_user():
    assert json.loads(dockerfile_instructions("ENTRYPOINT")[-1]) == ["ades"]
    (user,) = dockerfile_instructions("USER")
    assert user.strip() not in {"root", "0"}
    parse_ades(json.loads(dockerfile_instructions("CMD")[-1]))
    env = " ".join(dockerfile_instructions("ENV"))
    assert set(re.findall(r"\bADES_[A-Z_]+", env)) <= SETTING_NAMES


def test_the_image_will_not_serve_the_network_without_auth():
    """Its default command listens on every interface; with no auth given at run time, `ades serve` refuses."""
    args = build_parser().parse_args(json.loads(dockerfile_instructions("CMD")[-1]))
    env = " ".join(dockerfile_instructions("ENV"))
    assert "ADES_ALLOW_UNAUTHENTICATED_BIND" not in env and "ADES_AUTH_" not in env
    with pytest.raises(ServeRefused):
        check_bind(Settings(_env_file=None), args.host)
    check_bind(Settings(_env_file=None, auth_tokens_file="/run/secrets/ades-tokens"), args.host)


def test_every_command_is_a_real_ades_command_line():
    ours = ades_services()
    assert set(ours) == {"ades", "consumer", "dask-scheduler", "dask-worker"}
    for name, service in services().items():
        if "command" in service or "entrypoint" in service:
            assert name in ours, f"{name} runs a command but not from the ades image"
            assert "entrypoint" not in service, f"{name} replaces the ades entrypoint"
    commands = {name: [str(arg) for arg in s["command"]] for name, s in ours.items()}
    for argv in commands.values():
        parse_ades(argv)
    assert commands["ades"][0] == "serve" and commands["consumer"] == ["consumer"]
    assert commands["dask-scheduler"][:2] == ["dask", "scheduler"]
    assert commands["dask-worker"][:2] == ["dask", "worker"]


def test_every_ades_variable_is_a_setting_with_a_valid_value():
    for name, service in services().items():
        env = environment(service)
        unknown = {k for k in env if k.startswith("ADES_")} - SETTING_NAMES
        assert not unknown, f"{name}: not ades settings: {sorted(unknown)}"
        values = {k.removeprefix("ADES_").lower(): v for k, v in env.items() if k.startswith("ADES_")}
        if values:
            Settings(_env_file=None, **values)  # raises on a value the server would refuse at start


def test_every_image_is_pinned():
    for name, service in services().items():
        image = service.get("image")
        assert image, f"{name} has no image name"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} carries no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned to a version"
    for base in re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE):
        assert ":" in base and not base.endswith(":latest"), f"Dockerfile base {base} is not pinned"


def test_the_pieces_agree():
    s = services()
    # Elasticvue is served on 8080 and preconfigured with the cluster at the address the browser reaches.
    assert "127.0.0.1:8080:8080" in s["elasticvue"]["ports"]
    assert "127.0.0.1:9200:9200" in s["elasticsearch"]["ports"]
    es_env = environment(s["elasticsearch"])
    assert es_env["http.cors.enabled"] == "true"
    assert es_env["http.cors.allow-origin"] == "http://localhost:8080"
    assert es_env["xpack.security.enabled"] == "false" and es_env["discovery.type"] == "single-node"
    clusters = json.loads(environment(s["elasticvue"])["ELASTICVUE_CLUSTERS"])
    assert [c["uri"] for c in clusters] == ["http://localhost:9200"]
    # Elasticsearch keeps its data in a named volume.
    assert "es-data:/usr/share/elasticsearch/data" in s["elasticsearch"]["volumes"]
    assert set(compose()["volumes"]) == {"es-data"}
    # ades containers reach the others by service name and share no disk: outputs in the bucket, logs in the store
    for name, service in ades_services().items():
        env = environment(service)
        assert env["ADES_ES_URL"] == "http://elasticsearch:9200"
        assert env["ADES_AWS_ENDPOINT_URL"] == "http://moto:5000"
        assert env["ADES_DASK_SCHEDULER"] == "tcp://dask-scheduler:8786"
        assert not service.get("volumes"), f"{name} mounts {service.get('volumes')}"
        assert (env["ADES_OUTPUT_STORAGE"], env["ADES_LOG_STORE"]) == ("s3", "elasticsearch"), name
    # presigned URLs name moto as the host publishes it; two API nodes, each on a host port of its own
    assert environment(s["ades"])["ADES_AWS_PUBLIC_ENDPOINT_URL"] == "http://localhost:5055"
    assert "127.0.0.1:5055:5000" in s["moto"]["ports"]
    assert s["ades"]["deploy"]["replicas"] == 2 and s["ades"]["ports"] == ["5000-5001:5000"]
    assert "tcp://dask-scheduler:8786" in s["dask-worker"]["command"]
    assert s["dask-scheduler"]["command"][-1] == "8786"
    for name in ("elasticsearch", "elasticvue", "moto", "ades", "dask-scheduler"):
        assert s[name]["healthcheck"]["test"], f"{name} has no health check"


def test_the_server_needs_a_token_and_only_it_is_published_beyond_loopback():
    s = services()
    server = s["ades"]
    env = environment(server)
    args = build_parser().parse_args([str(arg) for arg in server["command"]])
    values = {k.removeprefix("ADES_").lower(): v for k, v in env.items() if k.startswith("ADES_")}
    check_bind(Settings(_env_file=None, **values), args.host)  # auth on: it may listen on 0.0.0.0
    without = {k: v for k, v in values.items() if not k.startswith("auth_")}
    with pytest.raises(ServeRefused):
        check_bind(Settings(_env_file=None, **without), args.host)
    # the tokens file is a compose secret from the environment, copied in for the image's user, readable by it only
    (secret,) = server["secrets"]
    assert env["ADES_AUTH_TOKENS_FILE"] == f"/run/secrets/{secret['target']}"
    assert compose()["secrets"][secret["source"]] == {"environment": "ADES_TOKENS_YAML"}
    uid = re.search(r"useradd [^&]*--uid (\d+)", " ".join(dockerfile_instructions("RUN"))).group(1)
    assert (secret["uid"], secret["gid"], secret["mode"]) == (uid, uid, "0o400")
    assert not any("ADES_ALLOW_UNAUTHENTICATED_BIND" in environment(service) for service in s.values())
    # everything else (Elasticsearch without security, moto, Elasticvue) on the host's loopback only
    for name, service in s.items():
        for mapping in service.get("ports", []):
            assert name == "ades" or str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping}"


def test_docker_compose_config_accepts_the_file():
    try:
        version = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no docker command on this machine, so `docker compose config` cannot run")
    if version.returncode != 0:
        pytest.skip(f"`docker compose` is not available here ({(version.stderr or version.stdout).strip()[:120]})")
    run = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr


def test_the_services_that_run_jobs_can_sandbox_them():
    """Job tools run in bubblewrap: the image installs it, and the containers that run jobs (Dask workers here) may
    make the user namespaces it needs (Docker's default seccomp and AppArmor profiles refuse them)."""
    installed = " ".join(dockerfile_instructions("RUN"))
    assert "bubblewrap" in installed
    runners = {name: s for name, s in ades_services().items() if s.get("command", [])[:2] == ["dask", "worker"]}
    assert runners
    for name, service in runners.items():
        assert environment(service).get("ADES_SANDBOX", "bwrap") == "bwrap", name
        assert {"seccomp=unconfined", "apparmor=unconfined"} <= set(service.get("security_opt", [])), name
