# Shared helpers for scripts/setup.d/*.sh; sourced, not run.

# apt_install PKG...: installs the Debian packages that are missing, with one
# `apt-get update` per machine-day at most.
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "setup: installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    local stamp=/var/lib/apt/periodic/gridwatch-update-stamp
    if [ ! -e "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440 2>/dev/null)" ]; then
        $sudo apt-get update -qq
        $sudo mkdir -p "$(dirname "$stamp")" && $sudo touch "$stamp"
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# cargo_install CRATE VERSION [ARGS...]: `cargo install`s a tool into
# $HOME/.cache/gridwatch/tools unless that exact version is already there.
cargo_install() {
    local crate="$1" version="$2"; shift 2
    local root="$HOME/.cache/gridwatch/tools"
    if grep -q "^\"$crate $version " "$root/.crates.toml" 2>/dev/null; then
        return 0
    fi
    echo "setup: cargo install $crate@$version (one-off, cached in $root)"
    cargo install --quiet --locked --root "$root" "$crate" --version "$version" "$@"
}
