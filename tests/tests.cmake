# Tests, run by ctest. Every test has a timeout; tests that open sockets get a
# port range of their own (RAFTKV_PORT_BASE + 100 * n) so they run in parallel.
# Both bases stay below 32768, where Linux picks ephemeral ports for outgoing
# connections: a port in TIME-WAIT there could not be bound by a node.

find_package(Python3 REQUIRED COMPONENTS Interpreter)

# Unit tests: tests/unit/test_*.c, one executable each.
file(GLOB UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
foreach(src ${UNIT_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
  target_compile_options(${name} PRIVATE ${RAFTKV_WARNINGS})
  target_link_libraries(${name} PRIVATE raftkv_core)
  add_test(NAME unit.${name} COMMAND ${name} ${CMAKE_SOURCE_DIR})
  set_tests_properties(unit.${name} PROPERTIES TIMEOUT 120)
endforeach()

# Deterministic simulation of the pure Raft core.
file(GLOB SIM_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/sim/*.c)
if(SIM_SRC)
  add_executable(raftkv-sim ${SIM_SRC})
  target_compile_options(raftkv-sim PRIVATE ${RAFTKV_WARNINGS})
  target_link_libraries(raftkv-sim PRIVATE raftkv_core)
  if(RAFTKV_SANITIZE)
    set(SIM_SEEDS 300)
  else()
    set(SIM_SEEDS 2000)
  endif()
  add_test(NAME sim.3nodes COMMAND raftkv-sim --nodes 3 --seeds ${SIM_SEEDS})
  add_test(NAME sim.5nodes COMMAND raftkv-sim --nodes 5 --seeds ${SIM_SEEDS})
  set_tests_properties(sim.3nodes sim.5nodes PROPERTIES TIMEOUT 600)
endif()

# Integration (real processes) and TUI (tmux) tests: Python standard library only.
# -DRAFTKV_PORT_BASE=N moves the whole range, so that two build trees can run
# their tests at the same time on one machine.
if(NOT RAFTKV_PORT_BASE)
  if(RAFTKV_SANITIZE)
    set(RAFTKV_PORT_BASE 26000)
  else()
    set(RAFTKV_PORT_BASE 20000)
  endif()
endif()
file(GLOB PY_TESTS CONFIGURE_DEPENDS
  ${CMAKE_SOURCE_DIR}/tests/integration/test_*.py
  ${CMAKE_SOURCE_DIR}/tests/jepsen/test_*.py
  ${CMAKE_SOURCE_DIR}/tests/tui/test_*.py)
list(SORT PY_TESTS)
set(port_slot 0)
foreach(script ${PY_TESTS})
  get_filename_component(name ${script} NAME_WE)
  get_filename_component(dir ${script} DIRECTORY)
  get_filename_component(kind ${dir} NAME)
  math(EXPR port "${RAFTKV_PORT_BASE} + 100 * ${port_slot}")
  math(EXPR port_slot "${port_slot} + 1")
  add_test(NAME ${kind}.${name}
    COMMAND ${Python3_EXECUTABLE} ${script} --build ${CMAKE_BINARY_DIR} --port-base ${port})
  set_tests_properties(${kind}.${name} PROPERTIES TIMEOUT 300)
endforeach()
# The linearizability checker's own tests need no nodes: a minute is plenty.
if(TEST jepsen.test_lincheck_checker)
  set_tests_properties(jepsen.test_lincheck_checker PROPERTIES TIMEOUT 60)
endif()

# Fuzzing the RESP parsers. fuzz.resp_smoke runs the libFuzzer target on a
# deterministic corpus with any compiler; RAFTKV_FUZZ builds the real fuzzer:
#   CC=clang cmake -S . -B build-fuzz -DRAFTKV_FUZZ=ON && cmake --build build-fuzz --target fuzz_resp
#   build-fuzz/fuzz_resp -max_total_time=60
set(FUZZ_RESP_SRC ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_resp.c ${CMAKE_SOURCE_DIR}/src/resp.c
  ${CMAKE_SOURCE_DIR}/src/error.c
  ${CMAKE_SOURCE_DIR}/src/buf.c)
add_executable(fuzz_resp_smoke ${FUZZ_RESP_SRC} ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_main.c)
target_include_directories(fuzz_resp_smoke PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_compile_options(fuzz_resp_smoke PRIVATE ${RAFTKV_WARNINGS})
add_test(NAME fuzz.resp_smoke COMMAND fuzz_resp_smoke 200000)
set_tests_properties(fuzz.resp_smoke PROPERTIES TIMEOUT 120)

# Fuzzing what a node does with the bytes at its peer port: MAC, Envelope,
# PeerMessage checks, the core's step (tests/fuzz/fuzz_peer.c). The real
# fuzzer, from the smoke run's seeds: cmake --build build-fuzz --target fuzz_peer
# fuzz_peer_smoke; build-fuzz/fuzz_peer_smoke --corpus DIR; build-fuzz/fuzz_peer DIR
add_executable(fuzz_peer_smoke ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_peer.c
  ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_peer_main.c)
target_compile_options(fuzz_peer_smoke PRIVATE ${RAFTKV_WARNINGS})
target_link_libraries(fuzz_peer_smoke PRIVATE raftkv_core)
add_test(NAME fuzz.peer_smoke COMMAND fuzz_peer_smoke 100000)
set_tests_properties(fuzz.peer_smoke PROPERTIES TIMEOUT 120)

# Fuzzing what a node does with its data dir at start: any bytes in DIR/log,
# DIR/meta and a snapshot file (tests/fuzz/fuzz_datadir.c: wal_open, the
# snapshot loaded, raft_restore, a second open; a crash inside wal_open). The
# smoke run changes real data dirs the library wrote (fuzz_datadir_main.c).
# Its temporary dirs go to $TMPDIR: /dev/shm where there is one, so that the
# fsyncs of a few thousand opens do not wait for a disk.
add_executable(fuzz_datadir_smoke ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_datadir.c
  ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_datadir_main.c)
target_compile_options(fuzz_datadir_smoke PRIVATE ${RAFTKV_WARNINGS})
target_link_libraries(fuzz_datadir_smoke PRIVATE raftkv_core)
if(RAFTKV_SANITIZE)
  set(FUZZ_DATADIR_INPUTS 15000)
else()
  set(FUZZ_DATADIR_INPUTS 40000)
endif()
add_test(NAME fuzz.datadir_smoke COMMAND fuzz_datadir_smoke ${FUZZ_DATADIR_INPUTS})
set_tests_properties(fuzz.datadir_smoke PROPERTIES TIMEOUT 120)
if(IS_DIRECTORY /dev/shm)
  set_tests_properties(fuzz.datadir_smoke PROPERTIES ENVIRONMENT TMPDIR=/dev/shm)
endif()

# Test helpers: raftkv-forge crafts peer and control messages as an outsider
# would (tests/integration/test_node_auth.py).
file(GLOB TOOL_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/tools/*.c)
foreach(src ${TOOL_SRC})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_compile_options(${name} PRIVATE ${RAFTKV_WARNINGS})
  target_link_libraries(${name} PRIVATE raftkv_core PkgConfig::NANOMSG)
endforeach()

if(RAFTKV_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "RAFTKV_FUZZ needs clang: CC=clang cmake -DRAFTKV_FUZZ=ON ...")
  endif()
  add_executable(fuzz_resp ${FUZZ_RESP_SRC})
  target_include_directories(fuzz_resp PRIVATE ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(fuzz_resp PRIVATE ${RAFTKV_WARNINGS} -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(fuzz_resp PRIVATE -fsanitize=fuzzer,address,undefined)
  # The KV state machine: decode and apply arbitrary log entries.
  file(GLOB FUZZ_KV_LIB ${CMAKE_SOURCE_DIR}/src/kv*.c)
  add_executable(fuzz_kv ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_kv.c ${FUZZ_KV_LIB}
    ${CMAKE_SOURCE_DIR}/src/crc32c.c)
  target_include_directories(fuzz_kv PRIVATE ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(fuzz_kv PRIVATE PkgConfig::SODIUM)
  target_compile_options(fuzz_kv PRIVATE ${RAFTKV_WARNINGS} -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(fuzz_kv PRIVATE -fsanitize=fuzzer,address,undefined)
  # The wire and the Raft core compiled in, so that libFuzzer sees their branches.
  file(GLOB FUZZ_PEER_LIB ${CMAKE_SOURCE_DIR}/src/raft*.c)
  add_executable(fuzz_peer ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_peer.c ${CMAKE_SOURCE_DIR}/src/wire.c
    ${FUZZ_PEER_LIB})
  target_include_directories(fuzz_peer PRIVATE ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(fuzz_peer PRIVATE ${RAFTKV_WARNINGS} -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(fuzz_peer PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_peer PRIVATE raftkv_core)
  # A node's data dir at start: storage, snapshot files, the KV snapshot
  # loader and the core's restore compiled in. Seeds from the smoke run's data
  # dirs; a tmpfs for the temporary dirs (every input makes one, with fsyncs):
  #   cmake --build build-fuzz --target fuzz_datadir fuzz_datadir_smoke
  #   mkdir corpus && build-fuzz/fuzz_datadir_smoke --corpus corpus
  #   TMPDIR=/dev/shm build-fuzz/fuzz_datadir -max_total_time=600 -timeout=10 corpus
  file(GLOB FUZZ_DATADIR_LIB ${CMAKE_SOURCE_DIR}/src/wal*.c ${CMAKE_SOURCE_DIR}/src/kv*.c
    ${CMAKE_SOURCE_DIR}/src/raft*.c)
  add_executable(fuzz_datadir ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_datadir.c ${FUZZ_DATADIR_LIB}
    ${CMAKE_SOURCE_DIR}/src/snapshot_file.c ${CMAKE_SOURCE_DIR}/src/crc32c.c)
  target_include_directories(fuzz_datadir PRIVATE ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(fuzz_datadir PRIVATE ${RAFTKV_WARNINGS} -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(fuzz_datadir PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_datadir PRIVATE raftkv_core)
endif()
