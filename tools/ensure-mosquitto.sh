#!/usr/bin/env bash
# Make sure the Mosquitto broker (with its dynamic-security plugin and mosquitto_ctrl) is here.
# Debian's package `mosquitto` ships all three; as root we install it, otherwise we say exactly what to run.
set -euo pipefail
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "mosquitto is missing: installing the OS package 'mosquitto'" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
  # The package starts a system broker on :1883; this project runs its own brokers.
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
  exit 0
fi
echo "mosquitto is not installed. Install it with: sudo apt-get install mosquitto mosquitto-clients" >&2
echo "(or set MQTT_URL to an existing broker for 'make run')" >&2
exit 1
