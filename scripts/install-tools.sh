#!/usr/bin/env bash
# The repository's entry to the tool builds (make test, CI): the same script the package ships
# and `modelplat tools install` runs. Pins: toolchain/pins.env.
exec bash "$(cd "$(dirname "$0")/.." && pwd)/toolchain/install-tools.sh" "$@"
