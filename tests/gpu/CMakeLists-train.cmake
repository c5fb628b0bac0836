# GPU end-to-end tests of the trainer (tests/gpu/test_gpu_*.sh): run against the built binary,
# exit 77 (skipped, with the reason) without a CUDA device. Included from tests/gpu/CMakeLists.txt.
file(GLOB DPT_GPU_E2E_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/test_gpu_*.sh)
foreach(script ${DPT_GPU_E2E_TESTS})
  get_filename_component(name ${script} NAME_WE)
  add_test(NAME gpu.${name} COMMAND bash ${script} $<TARGET_FILE:dptrain> ${CMAKE_SOURCE_DIR})
  set_tests_properties(gpu.${name} PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 1800 RUN_SERIAL TRUE
    ENVIRONMENT "OMP_NUM_THREADS=2;OPENBLAS_NUM_THREADS=1")
endforeach()
