/* check_main.h: every tests/unit/check_<module>.c is its own executable (one ctest each) whose
 * main runs the module's Check suite: DPT_CHECK_MAIN(module_suite). */
#ifndef DPT_CHECK_MAIN_H
#define DPT_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

#define DPT_CHECK_MAIN(suite_fn)                                   \
    int main(void)                                                 \
    {                                                              \
        SRunner *sr = srunner_create(suite_fn());                  \
        srunner_run_all(sr, CK_NORMAL);                            \
        int failed = srunner_ntests_failed(sr);                    \
        srunner_free(sr);                                          \
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;               \
    }

#endif
