# mall_add_test(NAME name SOURCES a.c [b.c] [LIBS x]): a cmocka unit test in one line.
function(mall_add_test)
  cmake_parse_arguments(T "" "NAME" "SOURCES;LIBS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE mall PkgConfig::CMOCKA ${T_LIBS})
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  set_tests_properties(${T_NAME} PROPERTIES LABELS unit TIMEOUT 120)
endfunction()

# mall_embed_migrations(TARGET name DIR dir): compiles every NNNN_*.sql in DIR into
# a static library defining `const mall_migration_set mall_migrations_<name>`.
function(mall_embed_migrations)
  cmake_parse_arguments(M "" "NAME;DIR" "" ${ARGN})
  file(GLOB sql CONFIGURE_DEPENDS "${M_DIR}/[0-9][0-9][0-9][0-9]_*.sql")
  list(SORT sql)
  set(out "${CMAKE_BINARY_DIR}/migrations/${M_NAME}_migrations.c")
  add_custom_command(
    OUTPUT "${out}"
    COMMAND ${CMAKE_COMMAND} -DNAME=${M_NAME} -DOUT=${out} "-DFILES=${sql}"
            -P "${PROJECT_SOURCE_DIR}/cmake/EmbedMigrations.cmake"
    DEPENDS ${sql} "${PROJECT_SOURCE_DIR}/cmake/EmbedMigrations.cmake"
    COMMENT "Embedding ${M_NAME} migrations"
    # VERBATIM: the ';' between the files must reach cmake -P, not the shell
    VERBATIM)
  add_library(mall_migrations_${M_NAME} STATIC "${out}")
  target_include_directories(mall_migrations_${M_NAME} PUBLIC "${PROJECT_SOURCE_DIR}/lib")
  target_link_libraries(mall_migrations_${M_NAME} PUBLIC PkgConfig::LIBPQ PkgConfig::PROTOBUFC)
endfunction()
