# lib.sh - the frame every CLI test shares. Not a test itself (CMakeLists.txt leaves it out
# of the tests/cli/*.sh glob): each tests/cli/NAME.sh sources it first,
#     . "$(dirname "$0")/lib.sh"
# then skips what it cannot run (need_files, need_command: exit 77, CTest's SKIP_RETURN_CODE),
# makes its checks with the functions below and ends with `finish`.
#
# Sourcing it sets `set -u` and:
#   RUVLLM  the ruvllm binary, the script's $1 (without it the script stops with its usage)
#   DATA    the shared data folder: $RUVLLM_TESTDATA, else ../shared
#   TMP     a fresh directory for the script's files, removed when the script exits
#   fails   the count of failed checks, 0
# Every check below records a failure through `fail` and goes on, so one run reports every
# failing check, not only the first; `finish` turns the count into the exit status.
# Commands run through expect_rc leave their stdout in $TMP/out and stderr in $TMP/err, where
# the checks after them look.
# shellcheck shell=bash

set -u
# RUVLLM and DATA are for the script that sources this file
# shellcheck disable=SC2034
RUVLLM=${1:?usage: $(basename "$0") path/to/ruvllm}
# shellcheck disable=SC2034
DATA=${RUVLLM_TESTDATA:-../shared}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ruvllm-cli-$(basename "$0" .sh).XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
fails=0

# fail MESSAGE...: records one failed check and prints "FAIL: MESSAGE" on stdout.
fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

# need_files FILE...: skips the whole test (exit 77, "skip: FILE missing") unless every FILE
# exists as a regular file.
need_files() {
    local f
    for f in "$@"; do
        if [[ ! -f $f ]]; then
            echo "skip: $f missing"
            exit 77
        fi
    done
}

# need_command CMD WHY: skips the whole test (exit 77) unless CMD is on the PATH; WHY says
# what the test needs it for.
need_command() {
    if ! command -v "$1" >/dev/null; then
        echo "skip: $1 ($2) missing"
        exit 77
    fi
}

# excerpt FILE: FILE for a failure message: the whole of it up to 600 bytes, else its first
# and its last 300 bytes (a command's error usually ends its stderr, after any progress).
excerpt() {
    [[ -f $1 ]] || { printf '(no file %s)' "$1"; return; }
    local n
    n=$(wc -c <"$1")
    if ((n <= 600)); then
        cat "$1"
    else
        head -c 300 "$1"
        printf ' [...] '
        tail -c 300 "$1"
    fi
}

# expect_rc RC DESCRIPTION -- COMMAND...: runs COMMAND with its stdout in $TMP/out and its
# stderr in $TMP/err, and fails (DESCRIPTION, the status, the stderr) unless it exits with
# status RC. COMMAND reads the caller's stdin: redirect the call to give it input. With
# CLI_TIMEOUT set (seconds), COMMAND runs under timeout(1): a hang exits 124 and fails.
expect_rc() {
    local want=$1 what=$2
    if [[ ${3-} != -- ]]; then
        fail "expect_rc \"$what\": no -- before the command"
        return
    fi
    shift 3
    # the unquoted expansion is either nothing or the two words `timeout SECONDS`
    # shellcheck disable=SC2086
    ${CLI_TIMEOUT:+timeout $CLI_TIMEOUT} "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    [[ $rc == "$want" ]] || fail "$what: exit $rc, expected $want; stderr: $(excerpt "$TMP/err")"
}

# expect_out RC WANT DESCRIPTION -- COMMAND...: expect_rc RC, and COMMAND's stdout is WANT
# (its trailing newlines aside, as $(...) drops them).
expect_out() {
    local want_rc=$1 want_out=$2 what=$3
    shift 3
    expect_rc "$want_rc" "$what" "$@"
    local got
    got=$(cat "$TMP/out")
    [[ $got == "$want_out" ]] || fail "$what: got '$got', expected '$want_out'"
}

# expect_usage FLAG DESCRIPTION -- COMMAND...: COMMAND exits 2 (a usage error) and its
# stderr names FLAG (as a fixed string).
expect_usage() {
    local flag=$1 what=$2
    shift 2
    expect_rc 2 "$what" "$@"
    grep -qF -- "$flag" "$TMP/err" || fail "$what: message does not name $flag: $(excerpt "$TMP/err")"
}

# The checks of a file's text; WHAT, when given, starts the failure message.
# has FILE ERE [WHAT]: a line of FILE matches the extended regular expression ERE (grep -E).
has() { grep -qE -- "$2" "$1" || fail "${3:+$3: }$1 lacks /$2/: $(excerpt "$1")"; }
# has_text FILE TEXT [WHAT]: FILE holds TEXT as it stands, no character special (grep -F).
has_text() { grep -qF -- "$2" "$1" || fail "${3:+$3: }$1 lacks '$2': $(excerpt "$1")"; }
# has_line FILE LINE [WHAT]: a whole line of FILE is LINE exactly (grep -xF).
has_line() { grep -qxF -- "$2" "$1" || fail "${3:+$3: }$1 has no line '$2': $(excerpt "$1")"; }

# finish: ends the test: exit 1 when a check failed (printing how many), else 0.
finish() {
    if ((fails)); then
        echo "$(basename "$0"): $fails check(s) failed"
        exit 1
    fi
    echo "$(basename "$0"): ok"
    exit 0
}
