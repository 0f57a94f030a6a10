# Third-party libraries, all from Debian 12 packages (see script/bootstrap).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

pkg_check_modules(PROTOBUFC REQUIRED IMPORTED_TARGET libprotobuf-c)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)

# nng and civetweb ship no pkg-config file on Debian 12.
find_library(NNG_LIBRARY nng REQUIRED)
find_path(NNG_INCLUDE_DIR nng/nng.h REQUIRED)
find_library(CIVETWEB_LIBRARY civetweb REQUIRED)
find_path(CIVETWEB_INCLUDE_DIR civetweb.h REQUIRED)

find_program(PROTOC_C protoc-c REQUIRED)
