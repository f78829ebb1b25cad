# Sourced by scripts/test.sh: the browser test (tests/e2e/test_browser.py) drives Debian's Chromium
# (/usr/bin/chromium) through playwright. Install it when it is missing and we are root; otherwise say how.
# Without it the browser test fails (it never passes or skips without a browser).
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing chromium for the browser test (apt-get install -y chromium)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
            || echo "could not install chromium: the browser test will fail" >&2
    else
        echo "chromium is missing and we are not root: the browser test will fail." \
             "Install it with: sudo apt-get install -y chromium" >&2
    fi
fi
