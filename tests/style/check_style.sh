#!/usr/bin/env bash
# tests/style/check_style.sh ROOT — the house rules a machine can check:
#   1. every C file is formatted with the repository's .clang-format (clang-format 14);
#   2. no comment points at people or at documents a maintainer does not have
#      ("Owner: ...", "issue N", "the brief").
# Prints each offending file (and line) and exits 1; exits 0 when the tree is clean.
set -euo pipefail
root=${1:?usage: check_style.sh ROOT}
cd "$root"

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t cfiles < <(git ls-files -- '*.c' '*.h')
    mapfile -t allfiles < <(git ls-files -- src lua rules firmware docker tests docs README.md CMakeLists.txt)
else
    mapfile -t cfiles < <(find src firmware tests -name '*.[ch]' -not -path '*/build*')
    mapfile -t allfiles < <(find src lua rules firmware docker tests docs README.md CMakeLists.txt -type f -not -path '*/build*')
fi
[ "${#cfiles[@]}" -gt 0 ] || { echo "check_style: no C files found under $root" >&2; exit 1; }

fail=0
command -v clang-format >/dev/null || { echo "check_style: clang-format not installed" >&2; exit 1; }
for f in "${cfiles[@]}"; do
    if ! clang-format --dry-run -Werror --style=file "$f" >/dev/null 2>&1; then
        echo "not clang-formatted: $f (run: clang-format -i $f)"
        fail=1
    fi
done

# The style check itself names the patterns, so it is not searched.
pattern='Owner(s)?( of this contract)?:|[Ii]ssue [0-9]+|the brief'
for f in "${allfiles[@]}"; do
    [ "$f" = tests/style/check_style.sh ] && continue
    [ -f "$f" ] || continue
    hits=$(grep -nEI "$pattern" "$f" || true)
    if [ -n "$hits" ]; then
        printf '%s\n' "$hits" | sed "s|^|$f:|"
        fail=1
    fi
done

if [ "$fail" = 0 ]; then
    echo "check_style: ${#cfiles[@]} C files formatted, no references to people or outside documents"
fi
exit $fail
