#!/usr/bin/env bash
# tests/test-install.sh - the out-of-tree plugin workflow a user follows:
# install kdcl into a temporary prefix, build examples/plugin-template
# against it through pkg-config, drop the .so in a directory and run it
# with `kdcl loss --plugin-dir`.  Checks the loss and gradient values, that
# the plugin does not link libkdcl, and that installed plugins are found.
set -euo pipefail
src=${1:?usage: test-install.sh SOURCE_DIR}
tmp=$(mktemp -d /tmp/kdcl-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

meson setup "$tmp/build" "$src" --prefix "$tmp/prefix" -Dtests=false \
    >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log"; fail "meson setup"; }
ninja -C "$tmp/build" >"$tmp/ninja.log" 2>&1 || { cat "$tmp/ninja.log"; fail "build"; }
meson install -C "$tmp/build" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "install"; }

kdcl="$tmp/prefix/bin/kdcl"
pc=$(find "$tmp/prefix" -name kdcl.pc | head -n 1)
[ -n "$pc" ] || fail "kdcl.pc not installed"
[ -f "$tmp/prefix/include/kdcl/plugin.h" ] || fail "plugin.h not installed"

# The template, built against the installed headers only.
PKG_CONFIG_PATH=$(dirname "$pc") meson setup "$tmp/tpl" \
    "$src/examples/plugin-template" >"$tmp/tpl.log" 2>&1 \
    || { cat "$tmp/tpl.log"; fail "template setup"; }
ninja -C "$tmp/tpl" >>"$tmp/tpl.log" 2>&1 || { cat "$tmp/tpl.log"; fail "template build"; }
so="$tmp/tpl/template_mse.so"
[ -f "$so" ] || fail "template_mse.so not built"
if readelf -d "$so" | grep -q 'libkdcl'; then fail "the plugin links libkdcl"; fi

mkdir "$tmp/drop"
cp "$so" "$tmp/drop/"

# Inputs, written as .npy with the standard library only.
python3 - "$tmp" <<'PY'
import struct, sys
def save(path, vals, shape):
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % (
        ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else ""))
    pad = 64 - (10 + len(hdr) + 1) % 64
    hdr = hdr + " " * pad + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
        f.write(struct.pack("<%df" % len(vals), *vals))
d = sys.argv[1]
save(d + "/s.npy", [0.5, -1.0, 2.0, 0.0, 1.5, -0.5], (2, 3))
save(d + "/t.npy", [1.0, -1.0, 0.0, 0.5, 1.0, 0.5], (2, 3))
PY

out=$("$kdcl" loss --plugin-dir "$tmp/drop" --plugin template_mse \
      --student "$tmp/s.npy" --teacher "$tmp/t.npy" --set weight=2 \
      --grad-out "$tmp/g.npy")
echo "$out"
# diffs: -0.5 0 2 -0.5 0.5 -1 -> sum of squares 5.75, mean 0.958333
python3 - "$tmp/g.npy" "$out" <<'PY'
import struct, sys
out = dict(l.split(None, 1) for l in sys.argv[2].splitlines())
loss = float(out["loss"])
assert abs(loss - 2 * 5.75 / 6) < 1e-5, loss
data = open(sys.argv[1], "rb").read()
hlen = struct.unpack("<H", data[8:10])[0]
g = struct.unpack("<6f", data[10 + hlen:])
want = [2 * 2 * d / 6 for d in (-0.5, 0, 2, -0.5, 0.5, -1)]
assert all(abs(a - b) < 1e-6 for a, b in zip(g, want)), (g, want)
print("template_mse loss and gradient: ok")
PY

# The installed kdcl finds its installed plugins, and the dropped one.
"$kdcl" plugins --plugin-dir "$tmp/drop" > "$tmp/plugins.txt"
grep -q '^hinton ' "$tmp/plugins.txt" || fail "installed hinton not listed"
grep -q '^template_mse ' "$tmp/plugins.txt" || fail "template_mse not listed"
echo "1 passed, 0 failed"
