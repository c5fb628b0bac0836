# dptrain top-level Makefile: the two set-up commands of README.md.
#   make run    install dependencies, build, train fmnist-cnn on Fashion-MNIST (the default) with
#               2 ranks through launch/dptrain-run (mpirun, cores split between the ranks)
#   make test   install dependencies, build, run every test (ctest)
#   make build  build only (binary at build/dptrain)
#   make asan   build with ASan+UBSan in build-asan and run the unit tests there
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release
RUN_FLAGS ?=

.PHONY: deps build run test asan fuzz bench clean

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

run: build
	DPTRAIN=$(BUILD)/dptrain launch/dptrain-run -n 2 -- train --model models/fmnist-cnn.cfg \
	  --data fashion-mnist --metrics $(BUILD)/metrics.jsonl $(RUN_FLAGS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j 2

asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPT_SANITIZE=address,undefined -DDPT_WERROR=ON
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j 2 -L unit

# libFuzzer targets (clang, ASan+UBSan) built in build-fuzz, each run FUZZ_SECONDS on its seeds
FUZZ_SECONDS ?= 20
fuzz:
	@bash scripts/install-deps.sh --fuzz
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPT_FUZZ=ON -DDPT_BUILD_TESTS=OFF -DDPT_WITH_CUDA=OFF
	cmake --build build-fuzz -j $(JOBS) --target fuzz_idx fuzz_cifar fuzz_shard fuzz_model fuzz_ckpt fuzz_config
	bash tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

bench: build
	@bash scripts/install-deps.sh --bench
	bash benchmarks/train_vs_torch.sh

clean:
	rm -rf $(BUILD) build-asan build-fuzz
