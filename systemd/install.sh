#!/bin/bash
# ddsp-device installer for Raspberry Pi OS, 64-bit: Bookworm (Python 3.11) or Trixie (3.13).
#
#   sudo make install       (this script: systemd/install.sh install)
#   sudo make uninstall     (systemd/install.sh uninstall)
#
# Idempotent: run it again after `git pull` to update. What it writes (systemd/README.md has the
# reasons):
#   /usr/lib/sysusers.d/ddsp-device.conf        user ddsp-device in audio, i2c, gpio
#   /usr/lib/modules-load.d/ddsp-device.conf    snd and i2c-dev at boot
#   /usr/lib/systemd/system/ddsp-device.service (+ ddsp-device-cpufreq.service with GOVERNOR)
#   /opt/ddsp-device/venv                       the package (not editable) and its runtime
#   /usr/local/bin/ddsp-device                  -> /opt/ddsp-device/venv/bin/ddsp-device
#   /etc/ddsp-device/config.toml                from defaults.toml, only when absent
#   /etc/ddsp-device/config.toml.default        the packaged defaults, to compare with
#   /var/lib/ddsp-device/models/*.tflite        bundled models, only those not there yet
#
# Variables (make variables or environment):
#   NO_START=1            enable the service but do not (re)start it
#   GOVERNOR=performance  also install and enable ddsp-device-cpufreq.service
#   PURGE=1               uninstall: also remove /etc/ddsp-device and /var/lib/ddsp-device
#   PYTHON=python3        the interpreter the venv is made from
#   DESTDIR=DIR           stage everything under DIR and touch nothing else: no apt-get,
#                         systemctl, systemd-sysusers, modprobe or chown; the intended owners and
#                         modes go to DIR/.install-manifest (one line per path:
#                         type<TAB>mode<TAB>owner<TAB>group<TAB>path, type d, f or l)
#   SKIP_VENV=1           do not build the venv (tests)

set -euo pipefail

PREFIX=/opt/ddsp-device
VENV=$PREFIX/venv
CONF_DIR=/etc/ddsp-device
STATE_DIR=/var/lib/ddsp-device
MODELS_DIR=$STATE_DIR/models
UNIT_DIR=/usr/lib/systemd/system
SYSUSERS_DIR=/usr/lib/sysusers.d
MODULES_LOAD_DIR=/usr/lib/modules-load.d
BIN_LINK=/usr/local/bin/ddsp-device
SERVICE=ddsp-device.service
CPUFREQ=ddsp-device-cpufreq.service
SVC_USER=ddsp-device
SVC_GROUP=ddsp-device
# Build tools for pyalsaaudio (gcc, python3-dev, libasound2-dev), the venv, and the tools the
# next steps use (i2cdetect, aplay -L).
APT_PACKAGES=(python3-venv python3-dev gcc libasound2-dev i2c-tools alsa-utils)

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DESTDIR=${DESTDIR:-}
R=${DESTDIR%/}                      # prefix for every path written; empty on the real system
STAGING=0
[ -n "$R" ] && STAGING=1
SKIP_VENV=${SKIP_VENV:-}
NO_START=${NO_START:-}
GOVERNOR=${GOVERNOR:-}
PURGE=${PURGE:-}
PYTHON=${PYTHON:-python3}

MANIFEST=()
NOTES=()

say() { printf '  %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
note() { NOTES+=("$*"); }
is_true() { case "${1:-}" in 1 | yes | true | on) return 0 ;; *) return 1 ;; esac; }

record() { # record TYPE MODE OWNER GROUP PATH
    MANIFEST+=("$(printf '%s\t%s\t%s\t%s\t%s' "$@")")
}

set_owner() { # set_owner OWNER GROUP PATH: on the real system only; staged, it is recorded
    [ "$STAGING" = 1 ] || chown "$1:$2" "$R$3"
}

ensure_dir() { # ensure_dir PATH MODE OWNER GROUP
    local path=$1 mode=$2 owner=$3 group=$4
    if [ ! -d "$R$path" ]; then
        mkdir -p "$R$path"
        say "created $path/"
    fi
    chmod "$mode" "$R$path"
    set_owner "$owner" "$group" "$path"
    record d "$mode" "$owner" "$group" "$path"
}

put_file() { # put_file SRC PATH MODE OWNER GROUP: replace PATH atomically when its content differs
    local src=$1 path=$2 mode=$3 owner=$4 group=$5
    local dest=$R$path
    mkdir -p "$(dirname "$dest")"
    if [ -f "$dest" ] && ! [ -L "$dest" ] && cmp -s "$src" "$dest"; then
        chmod "$mode" "$dest"
    else
        local tmp
        tmp=$(mktemp "$dest.XXXXXX")
        cp "$src" "$tmp"
        chmod "$mode" "$tmp"
        mv -f "$tmp" "$dest"
        say "installed $path"
    fi
    set_owner "$owner" "$group" "$path"
    record f "$mode" "$owner" "$group" "$path"
}

write_manifest() {
    local file
    if [ "$STAGING" = 1 ]; then file=$R/.install-manifest; else file=$PREFIX/install-manifest; fi
    mkdir -p "$(dirname "$file")"
    printf '%s\n' "${MANIFEST[@]}" >"$file.tmp"
    mv -f "$file.tmp" "$file"
    chmod 0644 "$file"
}

# -- steps ----------------------------------------------------------------------------------------

check_environment() {
    if [ "$STAGING" = 0 ]; then
        [ "$(id -u)" = 0 ] || die "run as root: sudo make $1"
        command -v systemctl >/dev/null || die "systemctl not found: this installs a systemd service"
    fi
    if [ -n "$GOVERNOR" ] && [ "$GOVERNOR" != performance ]; then
        die "GOVERNOR=$GOVERNOR: only GOVERNOR=performance is offered"
    fi
}

install_apt_packages() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "system packages: all there (${APT_PACKAGES[*]})"
        return
    fi
    command -v apt-get >/dev/null || die "missing system packages: ${missing[*]} (no apt-get here)"
    say "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_user() {
    put_file "$SRC/systemd/ddsp-device.sysusers" "$SYSUSERS_DIR/ddsp-device.conf" 0644 root root
    if [ "$STAGING" = 0 ]; then
        systemd-sysusers "$SYSUSERS_DIR/ddsp-device.conf"
        say "user $SVC_USER: $(id "$SVC_USER")"
    fi
}

install_dirs() {
    ensure_dir "$PREFIX" 0755 root root
    ensure_dir "$CONF_DIR" 0755 root root
    # setgid: files that admins (group ddsp-device) add keep the group, so the daemon can read them
    ensure_dir "$STATE_DIR" 2770 "$SVC_USER" "$SVC_GROUP"
    ensure_dir "$MODELS_DIR" 2770 "$SVC_USER" "$SVC_GROUP"
}

python_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

install_lgpio() { # gpiozero's pin factory on a Pi; lgpio has no wheel for every Python
    local site=$1 pyver=$2
    "$R$VENV/bin/python" -c 'import lgpio' 2>/dev/null && return 0
    if "$R$VENV/bin/pip" install --disable-pip-version-check --quiet --only-binary :all: lgpio 2>/dev/null; then
        say "lgpio: installed from PyPI"
        return 0
    fi
    # No wheel for this Python (lgpio 0.2.2 stops at 3.12): Debian's python3-lgpio, linked in.
    if ! dpkg-query -W -f='${Status}' python3-lgpio 2>/dev/null | grep -q "ok installed"; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-lgpio; } >/dev/null 2>&1 || {
            warn "lgpio: neither a wheel for Python $pyver nor the python3-lgpio package; the panel (GPIO) will not start"
            return 0
        }
    fi
    local f linked=0
    while IFS= read -r f; do
        case "$f" in
            */lgpio.py | */_lgpio.cpython-"${pyver/./}"-*.so) ln -sfn "$f" "$site/$(basename "$f")" && linked=1 ;;
        esac
    done < <(dpkg -L python3-lgpio)
    if [ "$linked" = 1 ] && "$R$VENV/bin/python" -c 'import lgpio' 2>/dev/null; then
        say "lgpio: linked from Debian's python3-lgpio"
    else
        warn "lgpio: python3-lgpio does not fit Python $pyver; the panel (GPIO) will not start"
    fi
}

install_venv() {
    if is_true "$SKIP_VENV"; then
        say "venv: skipped (SKIP_VENV=1)"
        return
    fi
    local py pyver
    py=$(command -v "$PYTHON") || die "$PYTHON not found"
    pyver=$(python_version "$py")
    case "$pyver" in
        3.1[1-9]) ;;
        *) die "Python $pyver: ddsp-device needs Python 3.11 or newer" ;;
    esac
    if [ -x "$R$VENV/bin/python" ] && [ "$(python_version "$R$VENV/bin/python" 2>/dev/null)" = "$pyver" ]; then
        say "venv: $VENV (Python $pyver), updating"
    else
        [ -e "$R$VENV" ] && say "venv: Python changed, rebuilding $VENV"
        rm -rf "$R$VENV"
        "$py" -m venv "$R$VENV"
        say "venv: created $VENV (Python $pyver)"
    fi
    if [ "$STAGING" = 1 ]; then
        warn "a venv built under DESTDIR points at $R$VENV, not $VENV; use SKIP_VENV=1 for staging"
    fi
    "$R$VENV/bin/python" -m pip install --disable-pip-version-check --quiet --upgrade pip
    # Install from a copy of the sources: a build in the checkout would leave root-owned build/
    # and *.egg-info there, and the venv must not depend on the checkout (not editable).
    local stage
    stage=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$stage'" EXIT
    tar -C "$SRC" --exclude=__pycache__ --exclude='*.egg-info' -cf - pyproject.toml README.md device |
        tar -C "$stage" -xf -
    # The dependency markers pick the runtime: tflite-runtime (numpy<2) on Python 3.11,
    # ai-edge-litert on 3.12 and newer.
    say "venv: installing ddsp-device[hw] and its runtime (a few minutes on a Pi)"
    "$R$VENV/bin/python" -m pip install --disable-pip-version-check --quiet "${stage}[hw]"
    rm -rf "$stage"
    trap - EXIT
    case "$(uname -m)" in
        aarch64 | arm*) install_lgpio "$("$R$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" "$pyver" ;;
    esac
    record d 0755 root root "$VENV"
    say "venv: $("$R$VENV/bin/python" - <<'PY'
import importlib.metadata as md
found = []
for dist in ("ddsp-device", "tflite-runtime", "ai-edge-litert", "numpy", "pyalsaaudio", "lgpio"):
    try:
        found.append(f"{dist} {md.version(dist)}")
    except md.PackageNotFoundError:
        pass
print(", ".join(found))
PY
)"
}

install_cli_link() {
    mkdir -p "$R$(dirname "$BIN_LINK")"
    if [ -L "$R$BIN_LINK" ] || [ ! -e "$R$BIN_LINK" ]; then
        ln -sfn "$VENV/bin/ddsp-device" "$R$BIN_LINK"
        record l 0777 root root "$BIN_LINK"
    else
        warn "$BIN_LINK exists and is not a link; left alone (the CLI is $VENV/bin/ddsp-device)"
    fi
}

install_models() {
    local src name dest copied=0
    for src in "$SRC"/models/*.tflite; do
        [ -e "$src" ] || continue
        name=$(basename "$src")
        dest=$MODELS_DIR/$name
        if [ ! -e "$R$dest" ]; then
            put_file "$src" "$dest" 0640 "$SVC_USER" "$SVC_GROUP"
            copied=$((copied + 1))
        elif cmp -s "$src" "$R$dest"; then
            record f 0640 "$SVC_USER" "$SVC_GROUP" "$dest"
        else
            say "kept $dest (it differs from the bundled $name; not overwritten)"
        fi
    done
    say "models: $copied new in $MODELS_DIR"
}

install_config() {
    local defaults=$SRC/device/ddsp_device/defaults.toml
    local conf=$CONF_DIR/config.toml ref=$CONF_DIR/config.toml.default
    if [ ! -e "$R$conf" ] && [ ! -L "$R$conf" ]; then
        put_file "$defaults" "$conf" 0644 root root
    elif cmp -s "$defaults" "$R$conf"; then
        say "$conf: unchanged (the packaged defaults)"
        record f 0644 root root "$conf"
    else
        if [ -e "$R$ref" ] && ! cmp -s "$defaults" "$R$ref"; then
            say "kept your $conf; the packaged defaults changed since the last install"
            note "The packaged defaults changed; your $conf was kept. Compare: diff -u $conf $ref"
        else
            say "kept your $conf (edited; never overwritten)"
        fi
        record f 0644 root root "$conf"
    fi
    put_file "$defaults" "$ref" 0644 root root
}

install_units() {
    put_file "$SRC/systemd/$SERVICE" "$UNIT_DIR/$SERVICE" 0644 root root
    if [ "$GOVERNOR" = performance ] || [ -e "$R$UNIT_DIR/$CPUFREQ" ]; then
        put_file "$SRC/systemd/$CPUFREQ" "$UNIT_DIR/$CPUFREQ" 0644 root root
    fi
    put_file "$SRC/systemd/ddsp-device.modules-load" "$MODULES_LOAD_DIR/ddsp-device.conf" 0644 root root
}

start_service() {
    [ "$STAGING" = 0 ] || return 0
    modprobe -a snd i2c-dev 2>/dev/null || warn "modprobe snd i2c-dev failed (they load at the next boot)"
    systemctl daemon-reload
    systemctl enable --quiet "$SERVICE"
    say "enabled $SERVICE (starts at boot)"
    if [ "$GOVERNOR" = performance ]; then
        systemctl enable --quiet "$CPUFREQ"
        if is_true "$NO_START"; then say "enabled $CPUFREQ"; else
            systemctl restart "$CPUFREQ" || warn "$CPUFREQ failed: journalctl -u $CPUFREQ"
            say "enabled $CPUFREQ; governor now: $(cat /sys/devices/system/cpu/cpufreq/policy0/scaling_governor 2>/dev/null || echo '?')"
        fi
    fi
    if is_true "$NO_START"; then
        say "not started (NO_START=1): sudo systemctl restart $SERVICE"
    elif systemctl restart "$SERVICE"; then
        say "started $SERVICE"
    else
        warn "$SERVICE did not start; read: journalctl -u $SERVICE -n 50"
        note "The service did not start: usually I2C is off or audio.device names no card (next steps 1-2), then: sudo systemctl restart ddsp-device"
    fi
}

boot_config_hints() {
    local cfg=/boot/firmware/config.txt
    [ -e "$cfg" ] || cfg=/boot/config.txt
    local i2c="missing" audio="no dtoverlay for an I2S DAC"
    if [ "$STAGING" = 0 ] && [ -r "$cfg" ]; then
        grep -Eq '^[[:space:]]*dtparam=([^#]*,)?i2c_arm=on' "$cfg" && i2c="on"
        grep -Eq '^[[:space:]]*dtparam=[^#]*i2c_arm_baudrate=400000' "$cfg" && i2c="$i2c, 400 kHz"
        grep -Eq '^[[:space:]]*dtoverlay=(hifiberry|iqaudio|allo|justboom)' "$cfg" &&
            audio=$(grep -Eo '^[[:space:]]*dtoverlay=(hifiberry|iqaudio|allo|justboom)[^[:space:]]*' "$cfg" | head -1 | tr -d '[:space:]')
        printf '\n%s now: I2C %s; sound: %s\n' "$cfg" "$i2c" "$audio"
    fi
    cat <<EOF

Boot settings (not changed by this installer; hardware/README.md explains): add to
/boot/firmware/config.txt under [all], then reboot:
    dtparam=i2c_arm=on,i2c_arm_baudrate=400000
    dtparam=audio=off
    dtoverlay=hifiberry-dacplus      # your DAC's overlay; none for USB audio
EOF
}

next_steps() {
    cat <<EOF

Next:
  1. Enable I2C: sudo raspi-config nonint do_i2c 0  (100 kHz; the config.txt line above sets
     400 kHz), then reboot. Check: i2cdetect -y 1
  2. Choose the sound card: aplay -L | grep '^hw:', then set audio.device in
     $CONF_DIR/config.toml, e.g. device = "hw:CARD=sndrpihifiberry,DEV=0";
     check it: ddsp-device config check $CONF_DIR/config.toml
  3. Calibrate (service stopped): sudo systemctl stop ddsp-device; ddsp-device calibrate
  4. Run: sudo systemctl restart ddsp-device; systemctl status ddsp-device; ddsp-device status
     (journalctl -u ddsp-device -f follows the log)
  Let your login use ddsp-device status, calibrate and models without sudo:
     sudo usermod -aG ddsp-device,i2c,gpio,audio \$USER   (then log in again)
EOF
    if [ "$GOVERNOR" != performance ] && [ ! -e "$R$UNIT_DIR/$CPUFREQ" ]; then
        echo "  Optional: CPU governor 'performance' at boot: sudo make install GOVERNOR=performance"
    fi
    local n
    for n in "${NOTES[@]}"; do printf '\nNote: %s\n' "$n"; done
}

do_install() {
    check_environment install
    echo "ddsp-device: installing${R:+ into $R (staging: nothing outside it is touched)}"
    [ "$STAGING" = 1 ] || install_apt_packages
    install_user
    install_dirs
    install_venv
    install_cli_link
    install_models
    install_config
    install_units
    write_manifest
    start_service
    boot_config_hints
    next_steps
}

# -- uninstall ------------------------------------------------------------------------------------

remove() { # remove PATH...: files, links or trees under the root, saying which
    local p
    for p in "$@"; do
        if [ -e "$R$p" ] || [ -L "$R$p" ]; then
            rm -rf -- "$R$p"
            say "removed $p"
        fi
    done
}

do_uninstall() {
    check_environment uninstall
    echo "ddsp-device: uninstalling${R:+ from $R}"
    if [ "$STAGING" = 0 ]; then
        systemctl disable --now --quiet "$SERVICE" 2>/dev/null || true
        systemctl disable --now --quiet "$CPUFREQ" 2>/dev/null || true
        say "stopped and disabled $SERVICE"
    fi
    remove "$UNIT_DIR/$SERVICE" "$UNIT_DIR/$CPUFREQ" "$SYSUSERS_DIR/ddsp-device.conf" \
        "$MODULES_LOAD_DIR/ddsp-device.conf"
    if [ -L "$R$BIN_LINK" ] && [ "$(readlink "$R$BIN_LINK")" = "$VENV/bin/ddsp-device" ]; then
        remove "$BIN_LINK"
    fi
    remove "$PREFIX"
    [ "$STAGING" = 0 ] || remove /.install-manifest
    if [ "$STAGING" = 0 ]; then
        systemctl daemon-reload
        systemctl reset-failed "$SERVICE" 2>/dev/null || true
    fi
    if is_true "$PURGE"; then
        remove "$CONF_DIR" "$STATE_DIR"
    else
        echo
        echo "Kept (PURGE=1 removes them): $CONF_DIR (your config), $STATE_DIR (models, calibration, state)."
    fi
    echo "Kept: the user and group $SVC_USER (sudo userdel $SVC_USER; sudo groupdel $SVC_GROUP) and the system packages."
}

case "${1:-}" in
    install) do_install ;;
    uninstall) do_uninstall ;;
    *) die "usage: $0 install|uninstall" ;;
esac
