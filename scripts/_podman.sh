# Sourced by scripts/test.sh: tests/integration/test_containers_podman.py runs DockerRequirement tools in real podman
# containers (runc: Debian's crun refuses hybrid cgroups) of an image it builds from static busybox (`file` tells it
# is static). Install them when missing and we are root; otherwise those tests skip, saying what is missing.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=""
    for need in podman:podman runc:runc busybox:busybox-static file:file; do
        command -v "${need%%:*}" >/dev/null 2>&1 || missing="$missing ${need#*:}"
    done
    if [ -n "$missing" ]; then
        echo "installing$missing for the container tests (apt-get install -y$missing)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null; } \
            || echo "could not install$missing: the podman tests will skip" >&2
    fi
fi
