#!/usr/bin/env bash
# Installs the photo model (an SSD-MobileNetV2 object detector with a Cat class) into
# assets/models/, from the npm package @mediapipe/objectron (Apache-2.0): `npm pack`, check
# the tarball's sha256, then cut the label map and the TFLite model out of the package's
# packed-assets file at the offsets its loader's manifest gives. Run by `make setup`;
# does nothing when the files are there and check out. After the first run npm's cache
# makes it work offline.
set -euo pipefail

PACKAGE="@mediapipe/objectron@0.4.1675468480"
PACKAGE_SHA256="${TG_PACKAGE_SHA256:-fc3e37b326b05e8f596099c90b3e0931b05a56cd3160b9ac450b621794bac94c}"
MODEL_SHA256="d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6"
# TG_MODEL_DIR and TG_PACKAGE_SHA256 exist for the tests (a wrong checksum must be refused).
DIR="${TG_MODEL_DIR:-$(cd "$(dirname "$0")" && pwd)/models}"
MODEL="$DIR/ssd_mobilenetv2_oidv4_fp16.tflite"
LABELS="$DIR/ssd_mobilenetv2_oidv4_labels.txt"

fail() { echo "setup: photo model: $*" >&2; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$MODEL" ] && [ -f "$LABELS" ] && [ "$(sha "$MODEL")" = "$MODEL_SHA256" ]; then
  echo "setup: photo model present ($MODEL)"
  exit 0
fi
command -v npm >/dev/null && command -v node >/dev/null ||
  fail "npm and node are needed to fetch $PACKAGE; install them (apt-get install npm) and run make setup again"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "setup: fetching $PACKAGE with npm pack"
(cd "$work" && npm pack --prefer-offline --silent "$PACKAGE" >/dev/null 2>"$work/npm.log") ||
  fail "npm pack $PACKAGE failed ($(tail -1 "$work/npm.log")); check the npm registry is reachable, or that npm's cache holds the package"
tarball="$(ls "$work"/*.tgz)"
[ "$(sha "$tarball")" = "$PACKAGE_SHA256" ] ||
  fail "$(basename "$tarball") has sha256 $(sha "$tarball"), expected $PACKAGE_SHA256; refusing to use it"
tar -xzf "$tarball" -C "$work" package/objectron_solution_packed_assets.data package/objectron_solution_packed_assets_loader.js

# The loader calls loadPackage({"files": [{"filename", "start", "end"}, ...]}): one entry per
# file packed into the .data file. Print "start end" for the two files we want.
offsets="$(node -e '
  const js = require("fs").readFileSync(process.argv[1], "utf8");
  const found = js.match(/loadPackage\((\{"files":.*?\})\)/s);
  if (!found) { console.error("no loadPackage manifest"); process.exit(1); }
  const files = JSON.parse(found[1]).files;
  for (const suffix of ["_labelmap.txt", "ssd_mobilenetv2_oidv4_fp16.tflite"]) {
    const f = files.find((entry) => entry.filename.endsWith(suffix));
    if (!f) { console.error("manifest names no file ending in " + suffix); process.exit(1); }
    console.log(f.start + " " + f.end);
  }' "$work/package/objectron_solution_packed_assets_loader.js")" || fail "could not read the package's asset manifest"
data="$work/package/objectron_solution_packed_assets.data"
cut_out() { dd if="$data" of="$3" bs=64K iflag=skip_bytes,count_bytes skip="$1" count=$(($2 - $1)) status=none; }
read -r label_start label_end <<<"$(sed -n 1p <<<"$offsets")"
read -r model_start model_end <<<"$(sed -n 2p <<<"$offsets")"
cut_out "$label_start" "$label_end" "$work/labels.txt"
cut_out "$model_start" "$model_end" "$work/model.tflite"
[ "$(sha "$work/model.tflite")" = "$MODEL_SHA256" ] ||
  fail "the model cut from the package has sha256 $(sha "$work/model.tflite"), expected $MODEL_SHA256"
mkdir -p "$DIR"
mv "$work/labels.txt" "$LABELS.tmp" && mv "$LABELS.tmp" "$LABELS"
mv "$work/model.tflite" "$MODEL.tmp" && mv "$MODEL.tmp" "$MODEL"
echo "setup: photo model installed: $MODEL ($(wc -l < "$LABELS") labels)"
