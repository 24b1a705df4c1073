#!/usr/bin/env bash
# Fetch, here, what bench/gpu_tests.sh needs on a GPU machine besides the training packages: nbdev and its
# notebook runner (execnb, IPython and their pure-Python dependencies), as wheels for that machine's Python 3.12,
# pinned by constraints.txt, into .whl/test/ (git-ignored; carry ".whl" to the machine).
set -eu
cd "$(dirname "$0")/.."
mkdir -p .whl/test
python3 -m pip download -q --only-binary=:all: --python-version "${PY_VERSION:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any \
  -c constraints.txt -d .whl/test nbdev execnb 2>&1 | grep -v "^WARNING: Location" || true
# build tools are not needed to run tests, and would shadow the machine's own
rm -f .whl/test/setuptools-*.whl .whl/test/wheel-*.whl .whl/test/build-*.whl .whl/test/pyproject_hooks-*.whl
ls .whl/test
