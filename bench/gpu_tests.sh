#!/usr/bin/env bash
# The notebooks' `#| cuda` tests, with the rest of each notebook, on a GPU machine where the project and its
# packages are only on PYTHONPATH (as bench/gpu_run.sh sets them up) and nothing can be installed from the network.
# - nbdev and its test runner come as wheels in .whl/test/ (fetch them here with bench/device_test_wheels.sh;
#   TEST_WHEELS names another folder);
# - the project's console scripts (which some tests run, from beside `sys.executable`) are made as small launchers
#   next to a link to python3, and the tests run with that link as their Python.
# Run from the project root: `OUT=... bash bench/gpu_tests.sh`. NOTEBOOKS (default: those with `#| cuda` cells),
# TEST_FLAGS (default: cuda), CUDA_TESTS_S (time limit, default 300 s). Writes the whole output to $OUT/cuda_tests.log.
set -o pipefail
export OUT=${OUT:-bench/results/latest}; mkdir -p "$OUT"
site=$(mktemp -d); bin=$(mktemp -d)
wheels=${TEST_WHEELS:-.whl/test}
if ls "$wheels"/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl || exit 1
fi
# the link to python3 below is outside its virtual environment (no pyvenv.cfg beside it), so that environment's
# site-packages (torch...) go on the path too, after the project's own
export PYTHONPATH="$site:${PYTHONPATH:-$PWD}:$(python3 -c "import site; print(':'.join(site.getsitepackages()))")"
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg
unset PYTHONWARNINGS  # tests check warnings
ln -s "$(python3 -c "import sys; print(sys.executable)")" "$bin/python3"  # the real binary (not a shim)
launcher() {  # launcher NAME MODULE FUNCTION: a console script as pip would make it, run by the linked python3
  printf '#!%s\nimport sys\nfrom %s import %s\nsys.exit(%s())\n' "$bin/python3" "$2" "$3" "$3" > "$bin/$1"; chmod +x "$bin/$1"
}
for entry in $(sed -n 's/^console_scripts *= *//p' settings.ini); do
  target=${entry#*=}; launcher "${entry%%=*}" "${target%%:*}" "${target#*:}"
done
launcher nbdev_test nbdev.test nbdev_test
nbs=${NOTEBOOKS:-$(grep -l '#| cuda' nbs/*.ipynb | xargs -n1 basename | paste -sd'|')}
echo "notebooks: $nbs; flags: ${TEST_FLAGS-cuda}" | tee "$OUT/cuda_tests.log"
PATH="$bin:$PATH" timeout "${CUDA_TESTS_S:-300}" "$bin/nbdev_test" --path nbs --file_re "^($nbs)$" --flags "${TEST_FLAGS-cuda}" \
  --n_workers "${TEST_WORKERS:-3}" --timing 2>&1 | grep -v -i "warn" >> "$OUT/cuda_tests.log"
rc=${PIPESTATUS[0]}
tail -60 "$OUT/cuda_tests.log"  # the whole log is in the file: a failure's message can be longer than this
echo "nbdev_test exit status: $rc" | tee -a "$OUT/cuda_tests.log"
rm -rf "$site" "$bin"
exit "$rc"
