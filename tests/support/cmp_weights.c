/* cmp_weights: compare two weight files written by `dptrain train --save`.
 *   cmp_weights A B --exact      exit 0 iff every float is the same bits
 *   cmp_weights A B TOL          exit 0 iff |A - B|_2 <= TOL * |A|_2 (params and buffers)
 * Prints the largest element difference and the relative norm of the difference. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dptrain/checkpoint.h"

static int counts(const char *path, uint64_t *np, uint64_t *nb)
{
    unsigned char h[64];
    FILE *f = fopen(path, "rb");
    if (!f || fread(h, 1, sizeof h, f) != sizeof h) {
        fprintf(stderr, "cmp_weights: cannot read %s\n", path);
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    memcpy(np, h + 16, 8);
    memcpy(nb, h + 24, 8);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: cmp_weights A B --exact|TOL\n");
        return 2;
    }
    uint64_t np[2], nb[2];
    if (counts(argv[1], &np[0], &nb[0]) || counts(argv[2], &np[1], &nb[1]))
        return 2;
    if (np[0] != np[1] || nb[0] != nb[1]) {
        fprintf(stderr, "cmp_weights: different sizes\n");
        return 1;
    }
    size_t n = (size_t)(np[0] + nb[0]);
    float *a = malloc((n ? n : 1) * sizeof *a), *b = malloc((n ? n : 1) * sizeof *b);
    if (!a || !b)
        return 2;
    if (dpt_weights_load(argv[1], a, np[0], a + np[0], nb[0]) != DPT_OK
        || dpt_weights_load(argv[2], b, np[1], b + np[1], nb[1]) != DPT_OK) {
        fprintf(stderr, "cmp_weights: %s\n", dpt_error_get());
        return 2;
    }
    double dd = 0, aa = 0, dmax = 0;
    size_t ndiff = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        dd += d * d;
        aa += (double)a[i] * a[i];
        if (fabs(d) > dmax)
            dmax = fabs(d);
        ndiff += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    }
    double rel = aa > 0 ? sqrt(dd / aa) : sqrt(dd);
    printf("%zu floats, %zu differ, max |diff| %.3g, |diff|/|A| %.3g\n", n, ndiff, dmax, rel);
    free(a);
    free(b);
    if (!strcmp(argv[3], "--exact"))
        return ndiff ? 1 : 0;
    return rel <= atof(argv[3]) ? 0 : 1;
}
