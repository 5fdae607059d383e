# Thin wrapper around CMake. `make demo` and `make test` do all the set-up on a fresh
# Debian 12 machine (scripts/install-deps.sh installs what is missing).
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?=
# CUDA=0: build without the CUDA backend (default: on when nvcc is found)
ifeq ($(CUDA),0)
CMAKE_FLAGS += -DRUVLLM_CUDA=OFF
endif
RUVLLM_MODEL ?= $(abspath ../shared/models/stories260K.gguf)

.PHONY: all deps build test demo clean fuzz-long

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	$(if $(CUDA),cmake -S . -B $(BUILD) -DRUVLLM_CUDA=$(if $(filter 0,$(CUDA)),OFF,ON) >/dev/null)
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

demo: build
	@test -f "$(RUVLLM_MODEL)" || { echo "demo: model not found: $(RUVLLM_MODEL) (set RUVLLM_MODEL)"; exit 1; }
	$(BUILD)/ruvllm info "$(RUVLLM_MODEL)"
	$(BUILD)/ruvllm run -m "$(RUVLLM_MODEL)" -p "Once upon a time" -n 48 --temp 0

# Longer fuzzing by hand: every harness for RL_FUZZ_LONG_SECONDS (default 600) each.
fuzz-long: build
	cmake --build $(BUILD) --target fuzz_gguf_long

clean:
	rm -rf $(BUILD)
