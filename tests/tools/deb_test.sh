#!/bin/bash
# Installs leakalloc as a Debian user does: `cpack -G DEB`, `dpkg -i`, then a program
# built with plain `cc prog.c -lleakalloc` (no LD_LIBRARY_PATH, no ldconfig by hand),
# the command and its man page; then `dpkg -r` and nothing of it is left.
#   deb_test.sh <cpack> <build dir> <app.c> <C compiler>
# Needs root (dpkg); exits 77 (CTest's skip) otherwise, or when a leakalloc package is
# installed already (it is not this test's to replace). Runs alone (RUN_SERIAL): while
# the package is installed, /usr/lib has a libleakalloc.so that no other test asks for,
# but nothing else may run then all the same.
set -u
cpack=$1 build=$2 app=$3 cc=$4
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: the .deb install test needs root (dpkg -i / dpkg -r)"
  exit 77
fi
if dpkg-query -W -f='${Status}' leakalloc 2>/dev/null | grep -q "ok installed"; then
  echo "SKIP: a leakalloc package is installed already; this test installs and removes its own"
  exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/leakalloc-deb.XXXXXX")
installed=0
cleanup() {
  [ $installed = 1 ] && dpkg -r leakalloc >/dev/null 2>&1
  dpkg --purge leakalloc >/dev/null 2>&1  # the status entry dpkg -r keeps for the postrm
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# -- the package ------------------------------------------------------------------------
(cd "$tmp" && "$cpack" -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/pkg") >"$tmp/cpack.log" 2>&1 ||
  { cat "$tmp/cpack.log" >&2; fail "cpack -G DEB"; }
deb=$(ls "$tmp"/pkg/leakalloc_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || fail "no leakalloc_*.deb in $tmp/pkg: $(ls "$tmp/pkg")"
info=$(dpkg-deb --info "$deb") || fail "dpkg-deb --info"
echo "$info"
depends=$(dpkg-deb --field "$deb" Depends)
for lib in libmimalloc libunwind libdw1 libdebuginfod1 libcpp-httplib libc6; do
  [[ $depends == *"$lib"* ]] || fail "Depends lacks $lib: $depends"
done
mkdir "$tmp/ctl"
dpkg-deb --control "$deb" "$tmp/ctl" || fail "dpkg-deb --control"
grep -q ldconfig "$tmp/ctl/postinst" 2>/dev/null || fail "the postinst does not run ldconfig"
grep -q ldconfig "$tmp/ctl/postrm" 2>/dev/null || fail "the postrm does not run ldconfig"
grep -q "^libleakalloc 0 leakalloc" "$tmp/ctl/shlibs" 2>/dev/null || fail "no shlibs entry for libleakalloc.so.0"
files=$(dpkg-deb --contents "$deb" | awk '{print $6}' | sed 's,^\./,/,')
for f in /usr/bin/leakalloc /usr/include/leakalloc/leakalloc.h /usr/share/man/man1/leakalloc.1; do
  grep -qx "$f" <<<"$files" || fail "the package lacks $f"
done
for f in libleakalloc.so libleakalloc.so.0 pkgconfig/leakalloc.pc cmake/leakalloc/leakallocConfig.cmake; do
  grep -q "^/usr/lib.*/$f\$" <<<"$files" || fail "the package lacks /usr/lib/.../$f"
done

# -- installed --------------------------------------------------------------------------
# apt would install the Depends; dpkg -i checks them, and they are all here already.
dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; installed=1; fail "dpkg -i"; }
installed=1
libfile=$(dpkg -L leakalloc | grep '/libleakalloc\.so\.0$') || fail "dpkg -L lists no libleakalloc.so.0"
libdir=$(dirname "$libfile")
# (/lib/... on a merged-/usr system, where /lib is /usr/lib.)
ldconfig -p | grep -q "libleakalloc.so.0 .*=> .*/libleakalloc.so.0$" || fail "ld.so's cache lacks libleakalloc.so.0"
env -u LD_LIBRARY_PATH -u LIBRARY_PATH -u CPATH "$cc" "$app" -o "$tmp/app" -lleakalloc -ldl ||
  fail "cc app.c -lleakalloc against the installed package"
# The loader names the library by the path in its cache.
cached=$(ldconfig -p | sed -n 's,.*libleakalloc\.so\.0 .*=> \(.*\)/libleakalloc\.so\.0$,\1,p' | head -1)
out=$(env -u LD_LIBRARY_PATH -u LD_PRELOAD "$tmp/app" "$cached") || fail "the program linked -lleakalloc failed: $out"
echo "$out"
[[ $out == "app-ok "* ]] || fail "unexpected output: $out"
ver=$(/usr/bin/leakalloc --version) || fail "leakalloc --version"
[[ $ver == "leakalloc "* ]] || fail "leakalloc --version said $ver"
[ "$(command -v leakalloc)" = /usr/bin/leakalloc ] || echo "note: another leakalloc comes first in PATH"
man=$(man -w leakalloc) || fail "man -w leakalloc"
[ "$man" = /usr/share/man/man1/leakalloc.1 ] || [ "$man" = /usr/share/man/man1/leakalloc.1.gz ] || fail "man -w gives $man"
MANPAGER=cat MANWIDTH=100 man leakalloc 2>/dev/null | grep -q "COMMAND SERVE" || fail "man leakalloc does not render"
PKG_CONFIG_PATH= pkg-config --libs leakalloc | grep -q -- "-lleakalloc" || fail "pkg-config --libs leakalloc"
# The installed command finds the installed library for `run` (<bindir>/../lib).
run_out=$(cd "$tmp" && env -u LEAKALLOC_LIB /usr/bin/leakalloc run --quiet --out "$tmp/dumps" -- /bin/true 2>&1) ||
  fail "leakalloc run with the installed library: $run_out"
ls "$tmp"/dumps/true.*.f* >/dev/null 2>&1 || fail "leakalloc run left no final dump: $(ls "$tmp/dumps")"

# -- removed ----------------------------------------------------------------------------
listed=$(dpkg -L leakalloc | grep -v '^/\.$')
dpkg -r leakalloc >"$tmp/dpkg-r.log" 2>&1 || { cat "$tmp/dpkg-r.log" >&2; fail "dpkg -r"; }
installed=0
for f in $listed; do
  [ -d "$f" ] && continue  # directories that other packages share stay
  [ -e "$f" ] || [ -L "$f" ] && fail "$f is still there after dpkg -r"
done
ldconfig -p | grep -q libleakalloc && fail "ld.so's cache still has libleakalloc after dpkg -r"
echo "ok: the .deb installs, links, runs, documents and removes cleanly"
