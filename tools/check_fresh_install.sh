#!/usr/bin/env bash
# Fresh-install check: what a newcomer gets with the NEWEST releases pip resolves today.
#
# Creates a throwaway virtualenv, installs cotrain with its test extras WITHOUT constraints.txt,
# runs the test suite, and prints (1) the tests that fail, (2) every package whose resolved version
# differs from constraints.txt. Exit status is pytest's.
#
#   tools/check_fresh_install.sh                      # newest releases inside pyproject's ranges
#   tools/check_fresh_install.sh --no-upper-bounds    # also lift pyproject's '<' caps (e.g. transformers)
#   tools/check_fresh_install.sh --write-constraints  # on a green run, rewrite constraints.txt
#   tools/check_fresh_install.sh -- -x tests/detection   # arguments after -- go to pytest
#
# TORCH_SPEC (default torch==2.13.0, the CPU wheel our machines carry) is installed first so pip
# does not resolve a multi-GB CUDA build; set TORCH_SPEC=torch to let it float.
set -uo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
no_upper=0 write=0 pytest_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-upper-bounds) no_upper=1 ;;
        --write-constraints) write=1 ;;
        --) shift; pytest_args=("$@"); break ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "check_fresh_install: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [[ $write -eq 1 && $no_upper -eq 1 ]]; then
    echo "check_fresh_install: --write-constraints pins what pyproject allows; not with --no-upper-bounds" >&2
    exit 2
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/cotrain-fresh.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# A snapshot of the working tree (tracked and untracked, not ignored files), so edits made while the
# check runs cannot change what it tests.
src="$work/src"
mkdir -p "$src" && git -C "$repo" ls-files -z -co --exclude-standard \
    | (cd "$repo" && xargs -0 cp --parents -t "$src" 2>/dev/null || true)
if [[ $no_upper -eq 1 ]]; then
    # pyproject keeps every floor and drops every '<' cap
python3 - "$src/pyproject.toml" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
lifted = re.sub(r',\s*<[^",\]]+', '', text)
open(path, "w").write(lifted)
for old, new in zip(text.splitlines(), lifted.splitlines()):
    if old != new:
        print(f"lifted cap: {old.strip()}  ->  {new.strip()}")
PY
fi
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export TORCH_EXTENSIONS_DIR="$work/torch_extensions"
start=$(date +%s)
pip install -q "${TORCH_SPEC:-torch==2.13.0}" && pip install -q -e "$src[test]" || {
    echo "check_fresh_install: INSTALL FAILED (newest releases do not resolve or build)" >&2; exit 3; }
echo "install: $(( $(date +%s) - start )) s"
pip freeze --exclude-editable | sed 's/+cpu$//' > "$work/freeze.txt"
echo "== version drift against constraints.txt (constrained -> newest) =="
python3 - "$repo/constraints.txt" "$work/freeze.txt" <<'PY'
import sys
def pins(path):
    out = {}
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, ver = line.split("==", 1)
            out[name.strip().lower().replace("_", "-")] = ver.strip()
    return out
old, new = pins(sys.argv[1]), pins(sys.argv[2])
rows = [(n, old.get(n, "-"), new.get(n, "-")) for n in sorted(set(old) | set(new)) if old.get(n) != new.get(n)]
for name, a, b in rows:
    print(f"  {name:32s} {a:>16s} -> {b}")
print(f"  ({len(rows)} of {len(set(old) | set(new))} packages differ)")
PY
echo "== tests with the newest releases =="
(cd "$src" && python -m pytest -q -p no:cacheprovider "${pytest_args[@]}" 2>&1 | tee "$work/pytest.log")
rc=${PIPESTATUS[0]}
echo "== failing tests =="
grep -E '^(FAILED|ERROR) ' "$work/pytest.log" || echo "  none"
echo "total: $(( $(date +%s) - start )) s, pytest exit $rc"
if [[ $write -eq 1 ]]; then
    if [[ $rc -ne 0 ]]; then
        echo "check_fresh_install: not rewriting constraints.txt: the suite is red" >&2
    else
        { sed -n '1,/^[^#]/p' "$repo/constraints.txt" | grep '^#'; cat "$work/freeze.txt"; } > "$repo/constraints.txt.new"
        mv "$repo/constraints.txt.new" "$repo/constraints.txt"
        echo "constraints.txt rewritten ($(grep -c '==' "$repo/constraints.txt") pins); commit it with the run's counts"
    fi
fi
exit "$rc"
