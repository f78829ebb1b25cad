# Sourced by scripts/demo.sh and scripts/test.sh: jobs run in bubblewrap's sandbox by default (ADES_SANDBOX=bwrap).
# Install it when it is missing and we are root; otherwise say how. Without it every job fails with a message that
# says the same, unless ADES_SANDBOX=none.
if ! command -v bwrap >/dev/null 2>&1 && [ "${ADES_SANDBOX:-bwrap}" = bwrap ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing bubblewrap for the job sandbox (apt-get install -y bubblewrap)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } \
            || echo "could not install bubblewrap: jobs will fail until it is installed" >&2
    else
        echo "bubblewrap is missing and we are not root: jobs will fail until it is installed" \
             "(sudo apt-get install -y bubblewrap), or set ADES_SANDBOX=none to run them unconfined" >&2
    fi
fi
