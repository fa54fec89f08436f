#!/usr/bin/env bash
# Refresh the browser libraries that the planner page ships (it runs offline: no CDN).
# Installs exactly what webvendor/package-lock.json pins (npm ci) and copies the built files with
# their licence texts into paichan/service/web/vendor/. Usage: scripts/vendor_js.sh
# To move to a new release: change the version in webvendor/package.json, run `npm install` in
# webvendor/ (rewrites the lock file), then this script; see paichan/service/web/vendor/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found; install Node.js (e.g. 'sudo apt-get install npm')" >&2
  exit 1
fi
(cd webvendor && npm ci --no-audit --no-fund --loglevel=error) >&2
src=webvendor/node_modules
dst=paichan/service/web/vendor/echarts
mkdir -p "$dst"
cp "$src/echarts/dist/echarts.min.js" "$src/echarts/LICENSE" "$src/echarts/NOTICE" "$dst/"
# echarts.min.js also bundles zrender (BSD-3-Clause), tslib (0BSD) and code from d3 (BSD-3-Clause,
# which echarts' LICENSE points to): their licence texts travel with it
cp "$src/echarts/licenses/LICENSE-d3" "$dst/LICENSE-d3"
cp "$src/zrender/LICENSE" "$dst/LICENSE-zrender"
cp "$src/tslib/LICENSE.txt" "$dst/LICENSE-tslib"
version=$(node -p "require('./$src/echarts/package.json').version")
echo "vendored echarts $version into $dst" >&2
