#!/usr/bin/env bash
# Opt-in: build fastmlp with AddressSanitizer and UndefinedBehaviorSanitizer into a
# throwaway venv and run the test suite on it, on the portable kernels
# (FASTMLP_ISA=generic): the AVX-512 kernel reads A through inline assembly, which the
# sanitizer does not instrument, so out-of-bounds reads show only on the portable path.
#
#   bash tests/run_sanitizers.sh [pytest arguments...]
#
# Needs g++ with libasan/libubsan (Debian: part of g++). Takes several minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv="$(mktemp -d)/venv"
python -m venv "$venv"
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
"$venv/bin/python" -m pip install -q \
  -Ccmake.define.CMAKE_CXX_FLAGS="$flags" \
  -Ccmake.define.CMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -Cbuild-dir="$(dirname "$venv")/build" ".[test]"

# Python itself is not instrumented: preload the runtime, and leave leak checking to
# a dedicated run (the interpreter's own allocations would drown it).
export LD_PRELOAD="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export FASTMLP_ISA=generic
export FASTMLP_SANITIZERS=1  # tests that sanitizers cannot run skip, saying why
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
