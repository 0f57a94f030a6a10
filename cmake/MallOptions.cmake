# Build options of mall, in one place.

option(MALL_WERROR "Treat compiler warnings as errors" OFF)
set(MALL_SANITIZE "" CACHE STRING
    "Sanitizers for every target, e.g. address,undefined (empty: none)")
option(MALL_FUZZ "Build libFuzzer targets (needs clang)" OFF)

if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE RelWithDebInfo CACHE STRING "Build type" FORCE)
endif()

add_compile_options(-Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes
                    -Wimplicit-fallthrough -Wno-unused-parameter)
add_compile_definitions(_GNU_SOURCE)
# Link only the libraries a binary uses: libmall pulls in libcurl, libsodium and
# more for some services; the others should not map them (idle RSS).
add_link_options(-Wl,--as-needed)
if(MALL_WERROR)
  add_compile_options(-Werror)
endif()

if(MALL_SANITIZE)
  add_compile_options(-fsanitize=${MALL_SANITIZE} -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=${MALL_SANITIZE})
endif()
