#!/bin/bash
# Installs the build tree into a temporary prefix, then builds a program against the
# installed files the two ways users do: pkg-config, and CMake's find_package.
#   run_install_test.sh <cmake> <build dir> <this source dir> <C compiler>
set -u
cmake=$1 build=$2 here=$3 cc=$4
tmp=$(mktemp -d "${TMPDIR:-/tmp}/leakalloc-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
prefix=$tmp/prefix
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; fail "cmake --install"; }
pc=$(find "$prefix" -name leakalloc.pc | head -1)
[ -n "$pc" ] || fail "no leakalloc.pc installed"
[ -f "$prefix/include/leakalloc/leakalloc.h" ] || fail "no header installed"
libdir=$(dirname "$(dirname "$pc")")
[ -e "$libdir/libleakalloc.so" ] || fail "no libleakalloc.so next to the .pc file ($libdir)"
[ -f "$(dirname "$pc")/../cmake/leakalloc/leakallocConfig.cmake" ] || fail "no leakallocConfig.cmake"

# -- pkg-config -----------------------------------------------------------------------
flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs leakalloc) || fail "pkg-config"
echo "pkg-config: $flags"
for f in $flags; do
  case $f in
    -I*|-L*) [ -d "${f:2}" ] || fail "pkg-config gives $f, which does not exist (prefix baked in at configure time?)" ;;
  esac
done
mkdir "$tmp/pc"
# shellcheck disable=SC2086
"$cc" "$here/app.c" -o "$tmp/pc/app" $flags -Wl,-rpath,"$libdir" -ldl || fail "building with pkg-config flags"
out=$("$tmp/pc/app" "$libdir") || fail "the pkg-config-built app failed"
echo "$out"
[[ $out == "app-ok "* ]] || fail "unexpected output"

# -- find_package(leakalloc) ------------------------------------------------------------
mkdir "$tmp/proj"
cp "$here/app.c" "$tmp/proj/app.c"
cp "$here/CMakeLists.txt.in" "$tmp/proj/CMakeLists.txt"
"$cmake" -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
  >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log" >&2; fail "configuring a project with find_package(leakalloc)"; }
"$cmake" --build "$tmp/proj/build" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; fail "building it"; }
out=$("$tmp/proj/build/app" "$libdir") || fail "the find_package-built app failed"
echo "$out"
[[ $out == "app-ok "* ]] || fail "unexpected output"
echo "ok: installed package works through pkg-config and find_package"
