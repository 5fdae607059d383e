# fuzz.cmake - libFuzzer harnesses, included by CMakeLists.txt when clang is found
# (RL_CLANG). A harness is built by clang with -fsanitize=fuzzer,address,undefined from
# the library sources it needs only (not the whole library, which gcc builds), as part of
# the default build. CTest runs each with a fixed seed and a fixed number of runs over a
# seed corpus copied into the build folder, so a run is repeatable and the shared data is
# never written; any crash, leak, sanitizer report or timeout fails the test, and the
# input that caused it is left in <build>/fuzz/<name>/artifacts/.
#
# rl_add_fuzzer(NAME <name> SOURCES <library .c files> RUNS <n>
#               [SEEDS <files>] [GENERATOR <.c file>] [MAX_LEN <bytes>] [LIBS <-l flags>])
#   builds <build>/fuzz/<name>/<name> from tests/fuzz/<name>.c plus SOURCES; GENERATOR is
#   a program (built from it plus SOURCES) that writes extra seeds into the folder it is
#   given, run at build time; registers the CTest test
#   <name> (label fuzz) and a target <name>_long that fuzzes for RL_FUZZ_LONG_SECONDS
#   (default 600) on a corpus kept in the build folder, for runs by hand. LIBS are added
#   to the link (system libraries the SOURCES need). The test sees RUVLLM_TESTDATA.

set(RL_FUZZ_FLAGS -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined
    -fno-sanitize-recover=all -fno-omit-frame-pointer -Wall -Wextra -Werror
    -Wno-unused-parameter -D_GNU_SOURCE)
set(RL_FUZZ_LONG_SECONDS 600 CACHE STRING "Duration of the <name>_long fuzz targets")

function(rl_add_fuzzer)
  cmake_parse_arguments(F "" "NAME;RUNS;MAX_LEN;GENERATOR" "SOURCES;SEEDS;LIBS" ${ARGN})
  set(dir ${CMAKE_BINARY_DIR}/fuzz/${F_NAME})
  set(exe ${dir}/${F_NAME})
  set(harness ${CMAKE_SOURCE_DIR}/tests/fuzz/${F_NAME}.c)
  file(GLOB_RECURSE headers CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/*.h)
  add_custom_command(
    OUTPUT ${exe}
    COMMAND ${RL_CLANG} ${RL_FUZZ_FLAGS} -I${CMAKE_SOURCE_DIR}/include -I${CMAKE_SOURCE_DIR}/src
            ${harness} ${F_SOURCES} -o ${exe} -lm -lpthread ${F_LIBS}
    DEPENDS ${harness} ${F_SOURCES} ${headers} ${CMAKE_SOURCE_DIR}/include/ruvllm.h
    COMMENT "Building libFuzzer harness ${F_NAME}"
    VERBATIM)
  set(gen_dir ${dir}/seeds-gen)
  set(gen_stamp "")
  if(F_GENERATOR)
    set(gen_exe ${dir}/seed-generator)
    set(gen_stamp ${gen_dir}/.stamp)
    add_custom_command(
      OUTPUT ${gen_stamp}
      COMMAND ${RL_CLANG} -std=gnu11 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all
              -D_GNU_SOURCE -I${CMAKE_SOURCE_DIR}/include -I${CMAKE_SOURCE_DIR}/src
              ${F_GENERATOR} ${F_SOURCES} -o ${gen_exe} -lm -lpthread ${F_LIBS}
      COMMAND ${CMAKE_COMMAND} -E rm -rf ${gen_dir}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${gen_dir}
      COMMAND ${gen_exe} ${gen_dir}
      COMMAND ${CMAKE_COMMAND} -E touch ${gen_stamp}
      DEPENDS ${F_GENERATOR} ${F_SOURCES} ${headers} ${CMAKE_SOURCE_DIR}/include/ruvllm.h
      COMMENT "Generating seeds for ${F_NAME}"
      VERBATIM)
  endif()
  add_custom_target(${F_NAME} ALL DEPENDS ${exe} ${gen_stamp})

  # Seed corpus: copies, made at configure time.
  file(REMOVE_RECURSE ${dir}/seeds)
  file(MAKE_DIRECTORY ${dir}/seeds ${dir}/artifacts ${dir}/corpus-long ${gen_dir})
  foreach(s ${F_SEEDS})
    file(COPY ${s} DESTINATION ${dir}/seeds)
  endforeach()
  set(max_len "")
  if(F_MAX_LEN)
    set(max_len -max_len=${F_MAX_LEN})
  endif()

  # The test: a fresh work corpus each time (new inputs go there, the seeds stay as
  # they are), fixed seed and run count.
  add_test(NAME ${F_NAME}
    COMMAND bash -c "rm -rf \"$1\" && mkdir -p \"$1\" && exec \"$0\" -seed=1 -runs=$3 -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix=\"$2/\" ${max_len} \"$1\" \"$4\" \"$5\""
            ${exe} ${dir}/corpus-test ${dir}/artifacts ${F_RUNS} ${dir}/seeds ${gen_dir})
  set_tests_properties(${F_NAME} PROPERTIES LABELS fuzz TIMEOUT 900
                       ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1;UBSAN_OPTIONS=print_stacktrace=1;RUVLLM_TESTDATA=${RL_TESTDATA}")

  add_custom_target(${F_NAME}_long
    COMMAND ${exe} -max_total_time=${RL_FUZZ_LONG_SECONDS} -timeout=30 -rss_limit_mb=4096
            -print_final_stats=1 -artifact_prefix=${dir}/artifacts/ ${max_len}
            ${dir}/corpus-long ${dir}/seeds ${gen_dir}
    DEPENDS ${F_NAME}
    USES_TERMINAL
    COMMENT "Fuzzing ${F_NAME} for ${RL_FUZZ_LONG_SECONDS} s")
endfunction()

# ---- fuzz_gguf: the GGUF reader and writer --------------------------------------------
# Seeds: the small GGUF files (< 1.5 MB) of the test data.
file(GLOB RL_FUZZ_GGUF_CANDIDATES ${RL_TESTDATA}/models/*.gguf ${RL_TESTDATA}/models/vocab/*.gguf)
set(RL_FUZZ_GGUF_SEEDS "")
foreach(f ${RL_FUZZ_GGUF_CANDIDATES})
  file(SIZE ${f} sz)
  if(sz LESS 1572864)
    list(APPEND RL_FUZZ_GGUF_SEEDS ${f})
  endif()
endforeach()
file(GLOB RL_FUZZ_GGUF_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/util/*.c
     ${CMAKE_SOURCE_DIR}/src/gguf/*.c)
list(APPEND RL_FUZZ_GGUF_SOURCES ${CMAKE_SOURCE_DIR}/src/quant/types.c)
rl_add_fuzzer(NAME fuzz_gguf SOURCES ${RL_FUZZ_GGUF_SOURCES} SEEDS ${RL_FUZZ_GGUF_SEEDS}
              GENERATOR ${CMAKE_SOURCE_DIR}/tests/fuzz/gguf_seeds.c RUNS 150000)

# ---- fuzz_tokenize: tokenize / detokenize arbitrary bytes ------------------------------
# The harness loads vocabularies of the test data (RUVLLM_TESTDATA) plus one it builds in
# memory; seeds: the test strings of the vocabularies.
file(GLOB RL_FUZZ_TOK_SEEDS ${RL_TESTDATA}/models/vocab/*.inp)
file(GLOB RL_FUZZ_TOK_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/util/*.c
     ${CMAKE_SOURCE_DIR}/src/gguf/*.c ${CMAKE_SOURCE_DIR}/src/tokenizer/*.c)
list(APPEND RL_FUZZ_TOK_SOURCES ${CMAKE_SOURCE_DIR}/src/quant/types.c)
rl_add_fuzzer(NAME fuzz_tokenize SOURCES ${RL_FUZZ_TOK_SOURCES} SEEDS ${RL_FUZZ_TOK_SEEDS}
              RUNS 15000 MAX_LEN 2048 LIBS ${PCRE2_LDFLAGS} ${UTF8PROC_LDFLAGS})

# ---- fuzz_template: compile and render arbitrary template text -------------------------
# Seeds: the real chat templates of the test data.
file(GLOB RL_FUZZ_TPL_SEEDS ${RL_TESTDATA}/testdata/chat-templates/templates/*.jinja)
file(GLOB RL_FUZZ_TPL_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/util/*.c
     ${CMAKE_SOURCE_DIR}/src/template/*.c ${CMAKE_SOURCE_DIR}/src/gguf/*.c)
list(APPEND RL_FUZZ_TPL_SOURCES ${CMAKE_SOURCE_DIR}/src/quant/types.c) # template source from GGUF
rl_add_fuzzer(NAME fuzz_template SOURCES ${RL_FUZZ_TPL_SOURCES} SEEDS ${RL_FUZZ_TPL_SEEDS}
              RUNS 20000 MAX_LEN 20000 LIBS ${JANSSON_LDFLAGS} ${UTF8PROC_LDFLAGS})

# ---- fuzz_grammar: GBNF parser and matcher ---------------------------------------------
# Input: grammar, NUL, text. Seeds: the example grammars of the test data.
file(GLOB RL_FUZZ_GRAMMAR_SEEDS ${RL_TESTDATA}/testdata/grammars/*.gbnf)
file(GLOB RL_FUZZ_GRAMMAR_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/util/*.c
     ${CMAKE_SOURCE_DIR}/src/gguf/*.c ${CMAKE_SOURCE_DIR}/src/tokenizer/*.c
     ${CMAKE_SOURCE_DIR}/src/grammar/*.c)
list(APPEND RL_FUZZ_GRAMMAR_SOURCES ${CMAKE_SOURCE_DIR}/src/quant/types.c)
rl_add_fuzzer(NAME fuzz_grammar SOURCES ${RL_FUZZ_GRAMMAR_SOURCES} SEEDS ${RL_FUZZ_GRAMMAR_SEEDS}
              RUNS 3000 MAX_LEN 4096 LIBS ${PCRE2_LDFLAGS} ${UTF8PROC_LDFLAGS})

# ---- fuzz_schema: JSON Schema / regex -> GBNF (grammars must compile, their random texts
# must validate) and the validator -------------------------------------------------------
file(GLOB RL_FUZZ_SCHEMA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/util/*.c
     ${CMAKE_SOURCE_DIR}/src/schema/*.c ${CMAKE_SOURCE_DIR}/src/grammar/*.c
     ${CMAKE_SOURCE_DIR}/src/gguf/*.c ${CMAKE_SOURCE_DIR}/src/tokenizer/*.c)
list(APPEND RL_FUZZ_SCHEMA_SOURCES ${CMAKE_SOURCE_DIR}/src/quant/types.c)
rl_add_fuzzer(NAME fuzz_schema SOURCES ${RL_FUZZ_SCHEMA_SOURCES}
              GENERATOR ${CMAKE_SOURCE_DIR}/tests/fuzz/schema_seeds.c RUNS 20000 MAX_LEN 2048
              LIBS ${PCRE2_LDFLAGS} ${UTF8PROC_LDFLAGS} ${JANSSON_LDFLAGS})

# ---- fuzz_toolcall: tool-call parsers (one-shot = streaming at any split) and grammars
# (they compile, their random texts parse to calls whose arguments validate) ------------
file(GLOB RL_FUZZ_TOOLCALL_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/util/*.c
     ${CMAKE_SOURCE_DIR}/src/toolcall/*.c ${CMAKE_SOURCE_DIR}/src/schema/*.c
     ${CMAKE_SOURCE_DIR}/src/grammar/*.c ${CMAKE_SOURCE_DIR}/src/gguf/*.c
     ${CMAKE_SOURCE_DIR}/src/tokenizer/*.c)
list(APPEND RL_FUZZ_TOOLCALL_SOURCES ${CMAKE_SOURCE_DIR}/src/quant/types.c)
rl_add_fuzzer(NAME fuzz_toolcall SOURCES ${RL_FUZZ_TOOLCALL_SOURCES}
              GENERATOR ${CMAKE_SOURCE_DIR}/tests/fuzz/toolcall_seeds.c RUNS 20000 MAX_LEN 4096
              LIBS ${PCRE2_LDFLAGS} ${UTF8PROC_LDFLAGS} ${JANSSON_LDFLAGS})
