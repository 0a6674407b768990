// page-walk: what an address translation missing from the TLB costs on this machine, and whether a software request
// (prefetch) starts one early. Not part of the build; a diagnostic for BENCHMARKS.md (issue 16, decode). x86-64, Linux:
//
//   gcc -O2 -o /tmp/page-walk benchmarks/probes/page-walk.c && /tmp/page-walk
//
// A pointer chase (each load's address comes from the load before, so nothing overlaps) visits the same number of lines
// three ways over 1 GiB that asked for 2 MiB pages (madvise, as decode's caches do):
//   packed         consecutive lines in random order: the data's footprint and nothing else
//   one per page   one line in each 4 KiB page, random order: the same footprint spread over 64x the address range
//   + request      the same, and each step also requests (prefetcht1) another line of the page it visits 4 steps later
// "one per page" minus "packed" is what translating the address costs when the TLB does not hold it. On bare metal with
// 2 MiB pages it is small (a 2 MiB entry covers 512 of these pages); where a hypervisor maps the guest's memory in 4 KiB
// pages, every 4 KiB page needs its own entry and a two-level walk, which is what this probe shows when the difference
// is hundreds of nanoseconds. "+ request" shows whether a request for a page starts its walk before the load needs it.
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

enum { Line = 64, Page = 4096, Steps = 2000000, RequestAhead = 4 };

static double Now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static unsigned long long State = 88172645463325252ull;
static unsigned long long Random(void) { State ^= State << 13; State ^= State >> 7; State ^= State << 17; return State; }

// ns per step of a chase over `lines` offsets `spacing` bytes apart, visited in one random cycle; with `request`, each
// step also asks for the line half a page away from the one RequestAhead steps on.
static double Chase(char* memory, size_t lines, size_t spacing, int request)
{
    size_t* order = malloc(lines * sizeof(size_t));
    for (size_t i = 0; i < lines; i++) order[i] = i * spacing;
    for (size_t i = lines - 1; i > 0; i--) { size_t j = Random() % (i + 1), t = order[i]; order[i] = order[j]; order[j] = t; }
    for (size_t i = 0; i < lines; i++) *(size_t*)(memory + order[i]) = order[(i + 1) % lines];

    size_t at = order[0], step = 0;
    for (size_t i = 0; i < lines; i++) at = *(size_t*)(memory + at); // once round, so the data is wherever it settles
    double start = Now();
    for (long i = 0; i < Steps; i++)
    {
        if (request) _mm_prefetch(memory + (order[(step + RequestAhead) % lines] ^ (Page / 2)), _MM_HINT_T1);
        at = *(size_t*)(memory + at);
        step++;
    }

    double ns = (Now() - start) / Steps * 1e9;
    free(order);
    return ns + (at == 1); // `at` used, so the chase is not removed
}

int main(void)
{
    size_t bytes = 1ull << 30;
    char* memory = aligned_alloc(2u << 20, bytes);
    madvise(memory, bytes, MADV_HUGEPAGE);
    memset(memory, 1, bytes);
    printf("ns per dependent load (chase of N lines):\n%8s %18s %24s %24s\n", "N", "packed", "one per 4 KiB page", "+ request 4 steps ahead");
    const size_t counts[] = { 4096, 16384, 65536, 262144 };
    for (int c = 0; c < 4; c++)
    {
        size_t lines = counts[c];
        printf("%8zu %9.1f (%5zu KiB) %12.1f (%5zu MiB) %24.1f\n", lines, Chase(memory, lines, Line, 0), lines * Line >> 10,
            Chase(memory, lines, Page, 0), lines * Page >> 20, Chase(memory, lines, Page, 1));
    }

    return 0;
}
