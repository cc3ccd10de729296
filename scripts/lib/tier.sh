# What the tier scripts share (sourced by scripts/*_tier.sh after they set TIER, their name, and PYTHON):
#
#   say MSG / die MSG      a line prefixed with the tier's name; die exits 1
#   elapsed                seconds since the tier started
#   free_port              a free loopback TCP port
#   apt_install PKG        install Debian's PKG (as root, or through sudo)
#   apt_need PKG CMD...    apt_install PKG unless every CMD is on PATH (/usr/sbin included)
#   tier_verdict STATUS JUNIT
#                          fail unless pytest's STATUS is 0 and its JUnit report counts at least one test and no
#                          skip: a skip in a tier means the tier did not test what it claims to
T0=$SECONDS

say() { echo "$TIER tier: $*"; }
die() {
  echo "$TIER tier: FAILED: $*" >&2
  exit 1
}
elapsed() { echo "$((SECONDS - T0))s"; }
free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

apt_install() {
  local pkg=$1 sudo=
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "$pkg is not installed and installing it needs root: apt-get install $pkg"
    sudo=sudo
  fi
  say "installing $pkg (apt-get install $pkg)"
  $sudo apt-get update -qq || die "apt-get update failed"
  # A package's postinst may try to start a service; there is no init here, and the tiers start their own instances.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null \
    || die "apt-get install $pkg failed"
}

apt_need() {
  local pkg=$1 cmd missing=
  shift
  export PATH=$PATH:/usr/sbin
  for cmd in "$@"; do command -v "$cmd" >/dev/null || missing=1; done
  [ -z "$missing" ] && return 0
  apt_install "$pkg"
  for cmd in "$@"; do command -v "$cmd" >/dev/null || die "$cmd not on PATH after installing $pkg"; done
}

tier_verdict() {
  local status=$1 junit=$2
  [ "$status" = 5 ] && die "pytest collected no test"
  [ "$status" = 0 ] || die "pytest exited $status"
  "$PYTHON" - "$junit" "$TIER" <<'PY' || die "the tier must run every test: none skipped, at least one run"
import sys
import xml.etree.ElementTree as ET

suite = ET.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
counts = {key: int(suite.get(key, 0)) for key in ("tests", "skipped", "failures", "errors")}
print(f"{sys.argv[2]} tier: junit {counts}")
sys.exit(0 if counts["tests"] > 0 and counts["skipped"] == counts["failures"] == counts["errors"] == 0 else 1)
PY
}
