# `cpack -G DEB` in the build tree: one Debian package, leakalloc, with the library, the
# headers, the pkg-config file, the CMake package, the `leakalloc` command and its man
# page, installed under /usr.
#
# Its Depends come from dpkg-shlibdeps over the library and the command (libmimalloc2.0,
# libunwind8, libdw1, libcpp-httplib0.11, ...), so they follow what the build linked.
# CPack's DEB generator writes a postinst and a postrm that run ldconfig when a shared
# library goes to /usr/lib, so that `cc prog.c -lleakalloc` runs right after dpkg -i;
# the shlibs file lets other packages depend on the library by soname.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME leakalloc)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "malloc replacement that finds leaks in running programs, with pprof heap profiles")
set(CPACK_PACKAGE_DESCRIPTION
  "leakalloc is a drop-in malloc replacement built on mimalloc. Every block knows its age\n\
and (sampled) allocation stack, so a running program can be asked which stacks hold\n\
memory older than N seconds. Dumps are read by jeprof, google-pprof and go tool pprof;\n\
the leakalloc command runs programs under it, reports, and serves live profiles.")
set(CPACK_PACKAGE_CONTACT "leakalloc developers <leakalloc@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# The readers the dumps are for, and what `leakalloc run` needs at run time; none is
# needed to link a program with -lleakalloc.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "golang-go, google-perftools, libjemalloc-dev")
set(CPACK_STRIP_FILES OFF)  # keep the symbols: the tool's reports read them
include(CPack)
