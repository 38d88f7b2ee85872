# Bytecode for Lambda's Python, included by infra/layer/Makefile and functions/Makefile, which
# `sam build` runs: Lambda finds none in a layer or function built without it and cannot write
# any (/opt and /var/task are read-only), so every cold start would compile each module it
# imports from source, about 0.5 s more (measured on the layer's packages: the app's imports
# take 1.0 s from source, 0.5 s from bytecode). Written by a Python 3.13, as bytecode is per
# version (the build machine's own is kept out), as unchecked hash-based .pyc (PEP 552): the
# sources' times, which a zip keeps to two seconds, are not compared, and the deployed code is
# immutable. PYTHON313 names the interpreter; infra/python313 finds one. Use: $(COMPILE) DIR.
PYTHON313 ?= $(shell "$(dir $(lastword $(MAKEFILE_LIST)))python313")
COMPILE = $(if $(PYTHON313),$(PYTHON313) -m compileall -q -j 0 --invalidation-mode unchecked-hash,\
	@echo "warning: no Python 3.13 found (set PYTHON313): built without bytecode, so each cold start compiles what it imports" >&2; true)
