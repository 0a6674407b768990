// decode-overlap: how much of the memory's read bandwidth a decode-shaped loop can use on this core, and what the
// software line requests and the key read order do to it. Not part of the build; a diagnostic for BENCHMARKS.md
// ("Decode's overlap on the Zen 4", issue 16). x86-64 with AVX-512F, Linux:
//
//   gcc -O3 -mavx512f -mfma -o /tmp/decode-overlap benchmarks/probes/decode-overlap.c -lpthread
//   /tmp/decode-overlap 7          # 7 alternating rounds at one thread, then at two
//
// The requests are prefetcht1, as decode makes them on the Zen 4; add -DREQUEST_HINT=_MM_HINT_T0 for prefetcht0 (Zen 5).
//
// The loop is decode's four-head kernel over fp32 rows of HeadDim 128 (Mistral's shape), reduced to its memory traffic
// and its arithmetic: per 32-key tile, the four heads' scores (queries read from L1 as FMA operands, one horizontal sum
// per key and head), a stand-in for the softmax, then P·V in two passes of two heads (the first reads the values from
// memory, the second again from L1). It runs over 256 MiB of keys and 256 MiB of values on 2 MiB pages, so every byte
// comes from memory, and reports GB/s of keys and values read against a plain sum over the same bytes measured in the
// same round (the "probe"). Variants:
//   keys by row   each key row front to back (the hardware prefetchers' order)
//   keys 4 x line four rows a 64-byte line at a time (decode's score loop, which loads a line once for four keys)
//   pipelined     the next tile's scores four keys at a time, each group followed by this tile's P·V for four keys (all
//                 four heads, the accumulators through L1), so both streams are read at an even pace through the tile
//   + requests    requests for the next tile's rows spread through the score loop and the first P·V pass, as decode does
//                 (pipelined: four key rows two tiles ahead and four value rows one tile ahead per group)
//   sum, ...      plain sums with no arithmetic: one stream with requests 16 KiB ahead; keys and values side by side (two
//                 streams), with and without requests; four streams (each array's halves). Several streams read more than
//                 one (1.1-1.3x on a Zen 5), which is why the benchmark's probe reads four parts side by side.
//   two blocks    the share's halves as two blocks, decode's tiles (keys by row) taken from each in turn: four streams
//   one stream    keys and values laid out per tile in one array ([32 key rows][their 32 value rows]), decode's order
//   requests line by line   decode's order, each score step requesting the next tile's 4 lines in address order (as the
//                 C# kernel asks) instead of the next four rows before the step's group, and the stand-in softmax one pass
//   + pages ahead the same, each tile also requesting one line of every 4 KiB page of keys and values 64 KiB ahead
//                 (prefetcht1), so those pages' address translations are done before the tile's own requests need them
//                 (on a VM whose host maps memory in 4 KiB pages a missing translation costs ~250 ns: page-walk.c)
//   FMAs only + pages  the same with only decode's multiply-adds: no per-key sums (the accumulators added into one
//                 vector) and no softmax stand-in; wrong scores, a bound for any kernel with decode's arithmetic and order
//   four regions  the share's quarters side by side: each group of four keys (and of four values) takes one row of each
//                 quarter at the same offset, so every load step touches four distant lines, as the four-stream sum
//                 does; line requests for each quarter's next rows and one request per page 64 KiB ahead
//   both streams requested  "+ pages ahead", but the score loop requests the first halves of the next tile's key and
//                 value rows and the first P·V pass their second halves, so both streams are always being requested
//   pages only    decode's order with no line requests, only one request per 4 KiB page of keys and values 64 KiB on:
//                 the page walks done early, the lines left to the hardware prefetchers
//   tile bursts   decode's access order with no arithmetic: a tile's key rows summed (16 KiB), then its value rows, and
//                 on; with requests, each line step asks for the line a tile on, as decode does
//   phases        keys before values in long runs: a phase's 4,096 key rows scored line by line (each step requesting the
//                 line a tile on, one request per page 64 KiB on), the scores kept, then its 4,096 value rows through P·V
//                 a tile at a time with the same requests; one stream at a time for 2 MiB instead of 16 KiB
//   L2 only       "keys 4 x line + requests" over the first 8 tiles of the share again and again (256 KiB of keys and
//                 values, held in L2): the loop's arithmetic alone, as a rate of bytes it would read. The last lines print
//                 what a loop that adds that time to the memory's (no overlap) would read, against the four-stream sum.
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifndef REQUEST_HINT
#define REQUEST_HINT _MM_HINT_T1
#endif

enum { HeadDim = 128, Tile = 32, Variants = 28, ResidentTiles = 8, PagesAheadBytes = 65536, PhaseRows = 4096 };
typedef enum { KeysByRow, KeysFourByLine, LineByLine, LineByLinePages, FmasOnlyPages, Pipelined, TwoStreamSum, InterleavedTiles, OneStreamSum, FourStreamSum, TwoBlocks, Fused, TwoBlocksSideBySide, Resident, FourRegions, BothStreams, PagesOnly, TileBursts, Phases } Order;
typedef struct { const char* Name; Order Order; int Requests; } Variant;
static const Variant Kinds[Variants] = {
    { "keys by row", KeysByRow, 0 }, { "keys by row + requests", KeysByRow, 1 },
    { "keys 4 x line", KeysFourByLine, 0 }, { "keys 4 x line + requests", KeysFourByLine, 1 },
    { "requests line by line", LineByLine, 1 }, { "  + pages ahead", LineByLinePages, 1 }, { "FMAs only + pages", FmasOnlyPages, 1 },
    { "pipelined", Pipelined, 0 }, { "pipelined + requests", Pipelined, 1 },
    { "sum, one stream + requests", OneStreamSum, 1 },
    { "sum, both streams at once", TwoStreamSum, 0 }, { "sum, both + requests", TwoStreamSum, 1 },
    { "sum, four streams at once", FourStreamSum, 0 },
    { "by row, two blocks by tile", TwoBlocks, 0 }, { "two blocks + requests", TwoBlocks, 1 },
    { "two blocks, keys side by side", TwoBlocksSideBySide, 0 }, { "  + requests", TwoBlocksSideBySide, 1 },
    { "fused pairs", Fused, 0 }, { "fused pairs + requests", Fused, 1 },
    { "one stream, K|V per tile", InterleavedTiles, 0 }, { "one stream + requests", InterleavedTiles, 1 },
    { "L2 only (arithmetic)", Resident, 1 },
    { "four regions + pages", FourRegions, 1 }, { "both streams requested", BothStreams, 1 }, { "pages only", PagesOnly, 0 },
    { "tile bursts, no arithmetic", TileBursts, 0 }, { "tile bursts + requests", TileBursts, 1 },
    { "phases of 4,096 rows", Phases, 1 },
};

static __thread float Queries[4][HeadDim] __attribute__((aligned(64)));
static __thread float Scores[4][Tile] __attribute__((aligned(64)));
static __thread float Probabilities[4][Tile] __attribute__((aligned(64)));
static __thread float Outputs[4][HeadDim] __attribute__((aligned(64)));
static volatile float Sink;

static double Now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static void Request(const float* row)
{
    for (int line = 0; line < HeadDim * (int)sizeof(float); line += 64) _mm_prefetch((const char*)row + line, REQUEST_HINT);
}

// Lane h of the result: the sum of all lanes of vector h.
static __m128 SumEach(__m512 a, __m512 b, __m512 c, __m512 d)
{
    __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
    __m512 e = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
    e = _mm512_add_ps(e, _mm512_shuffle_ps(e, e, 0x4E));
    e = _mm512_add_ps(e, _mm512_shuffle_ps(e, e, 0xB1));
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0), e));
}

static void StoreScores(__m128 four, int key)
{
    float lanes[4];
    _mm_storeu_ps(lanes, four);
    for (int head = 0; head < 4; head++) Scores[head][key] = lanes[head];
}

// One key row, front to back, against the four queries.
static void ScoreRow(const float* row, int key)
{
    __m512 h0 = _mm512_setzero_ps(), h1 = h0, h2 = h0, h3 = h0;
    for (int d = 0; d < HeadDim; d += 16)
    {
        __m512 k = _mm512_load_ps(row + d);
        h0 = _mm512_fmadd_ps(k, _mm512_load_ps(Queries[0] + d), h0);
        h1 = _mm512_fmadd_ps(k, _mm512_load_ps(Queries[1] + d), h1);
        h2 = _mm512_fmadd_ps(k, _mm512_load_ps(Queries[2] + d), h2);
        h3 = _mm512_fmadd_ps(k, _mm512_load_ps(Queries[3] + d), h3);
    }

    StoreScores(SumEach(h0, h1, h2, h3), key);
}

// Four key rows a line at a time: each query vector is loaded once for the four keys. With `requests`, step d (one line
// of each row) also requests the four lines requests[j] + requestStride * d / 16; with `fmasOnly`, the 16 dot products
// are added into one vector instead of finished per key and head (wrong scores: only the multiply-adds are left).
static inline __attribute__((always_inline)) void ScoreFourKeys(const float* const rows[4], int key, const char* const requests[4], int requestStride, int fmasOnly)
{
    __m512 acc[4][4];
    for (int h = 0; h < 4; h++) for (int j = 0; j < 4; j++) acc[h][j] = _mm512_setzero_ps();
    for (int d = 0; d < HeadDim; d += 16)
    {
        if (requests) for (int j = 0; j < 4; j++) _mm_prefetch(requests[j] + requestStride * (d / 16), REQUEST_HINT);
        __m512 k0 = _mm512_load_ps(rows[0] + d), k1 = _mm512_load_ps(rows[1] + d);
        __m512 k2 = _mm512_load_ps(rows[2] + d), k3 = _mm512_load_ps(rows[3] + d);
        for (int h = 0; h < 4; h++)
        {
            __m512 q = _mm512_load_ps(Queries[h] + d);
            acc[h][0] = _mm512_fmadd_ps(q, k0, acc[h][0]);
            acc[h][1] = _mm512_fmadd_ps(q, k1, acc[h][1]);
            acc[h][2] = _mm512_fmadd_ps(q, k2, acc[h][2]);
            acc[h][3] = _mm512_fmadd_ps(q, k3, acc[h][3]);
        }
    }

    if (fmasOnly)
    {
        __m512 all = _mm512_setzero_ps();
        for (int h = 0; h < 4; h++) all = _mm512_add_ps(all, _mm512_add_ps(_mm512_add_ps(acc[h][0], acc[h][1]), _mm512_add_ps(acc[h][2], acc[h][3])));
        _mm512_store_ps(Scores[key / 16], all); // one store per group, so the sums are not optimised away
        return;
    }

    for (int j = 0; j < 4; j++) StoreScores(SumEach(acc[0][j], acc[1][j], acc[2][j], acc[3][j]), key + j);
}

// Four consecutive key rows; with `ahead`, each step requests 4 lines of the rows there in address order (the tile's
// requests spread evenly over its loads, as the C# kernel's score loop makes them).
static inline __attribute__((always_inline)) void ScoreFourRowsRequesting(const float* rows, int key, const char* ahead, int fmasOnly)
{
    const float* const four[4] = { rows, rows + HeadDim, rows + 2 * HeadDim, rows + 3 * HeadDim };
    const char* const lines[4] = { ahead, ahead + 64, ahead + 128, ahead + 192 };
    ScoreFourKeys(four, key, ahead ? lines : NULL, 256, fmasOnly);
}

static void ScoreFourRows(const float* rows, int key) { ScoreFourRowsRequesting(rows, key, NULL, 0); }

// One line of each 4 KiB page of the keys and values PagesAheadBytes on from the `bytes` at keys and values (x86 prefetch
// never faults past the end), so the pages' walks start a few tiles before the tile's own requests reach them.
static void RequestPagesOf(const float* keys, const float* values, int bytes)
{
    for (int page = 0; page < bytes; page += 4096)
    {
        _mm_prefetch((const char*)keys + PagesAheadBytes + page, _MM_HINT_T1);
        _mm_prefetch((const char*)values + PagesAheadBytes + page, _MM_HINT_T1);
    }
}

// The pages of a whole tile's keys and values.
static void RequestPages(const float* keys, const float* values) { RequestPagesOf(keys, values, Tile * HeadDim * (int)sizeof(float)); }

// The line-by-line variants' lighter stand-in: one pass of vector arithmetic over the tile's scores.
static void SoftmaxOnePass(void)
{
    for (int h = 0; h < 4; h++)
        for (int x = 0; x < Tile; x += 16)
        {
            __m512 s = _mm512_load_ps(Scores[h] + x);
            _mm512_store_ps(Scores[h] + x, _mm512_mul_ps(_mm512_fmadd_ps(s, s, s), _mm512_set1_ps(1e-9f)));
        }
}

// A stand-in for the online softmax: a few passes of vector arithmetic over the tile's scores, no memory traffic.
static void Softmax(void)
{
    for (int pass = 0; pass < 16; pass++)
        for (int h = 0; h < 4; h++)
            for (int k = 0; k < Tile; k += 16)
            {
                __m512 x = _mm512_load_ps(Scores[h] + k);
                x = _mm512_fmadd_ps(x, x, x);
                _mm512_store_ps(Scores[h] + k, _mm512_mul_ps(_mm512_fmadd_ps(x, x, x), _mm512_set1_ps(1e-9f)));
            }
}

// Heads a and b's output rows into (and back from) sixteen accumulators.
static inline __attribute__((always_inline)) void LoadOutputs(__m512* oa, __m512* ob, int a, int b)
{
    for (int i = 0; i < 8; i++) { oa[i] = _mm512_load_ps(Outputs[a] + 16 * i); ob[i] = _mm512_load_ps(Outputs[b] + 16 * i); }
}

static inline __attribute__((always_inline)) void StoreOutputs(const __m512* oa, const __m512* ob, int a, int b)
{
    for (int i = 0; i < 8; i++) { _mm512_store_ps(Outputs[a] + 16 * i, oa[i]); _mm512_store_ps(Outputs[b] + 16 * i, ob[i]); }
}

// P·V for heads a and b over the tile: whole value rows, sixteen accumulators.
static void AddValues(const float* values, int a, int b, const float* next)
{
    __m512 oa[8], ob[8];
    LoadOutputs(oa, ob, a, b);
    for (int k = 0; k < Tile; k++)
    {
        if (next) Request(next + k * HeadDim);
        __m512 pa = _mm512_set1_ps(Scores[a][k]), pb = _mm512_set1_ps(Scores[b][k]);
        for (int i = 0; i < 8; i++)
        {
            __m512 v = _mm512_load_ps(values + k * HeadDim + 16 * i);
            oa[i] = _mm512_fmadd_ps(pa, v, oa[i]);
            ob[i] = _mm512_fmadd_ps(pb, v, ob[i]);
        }
    }

    StoreOutputs(oa, ob, a, b);
}

// P·V of keys first .. first + 3 at values for heads a and a + 1 into their accumulators (inlined: they stay in registers).
static inline __attribute__((always_inline)) void AddFourKeysTwoHeads(__m512* oa, __m512* ob, const float* values, int a, int first)
{
    for (int k = first; k < first + 4; k++)
    {
        __m512 pa = _mm512_set1_ps(Probabilities[a][k]), pb = _mm512_set1_ps(Probabilities[a + 1][k]);
        for (int i = 0; i < 8; i++)
        {
            __m512 v = _mm512_load_ps(values + k * HeadDim + 16 * i);
            oa[i] = _mm512_fmadd_ps(pa, v, oa[i]);
            ob[i] = _mm512_fmadd_ps(pb, v, ob[i]);
        }
    }
}

// P·V of keys first .. first + 3 of the tile at values for all four heads, two heads at a time, their accumulators
// loaded from and stored to L1 around the four keys.
static void AddFourKeys(const float* values, int first)
{
    for (int a = 0; a < 4; a += 2)
    {
        __m512 oa[8], ob[8];
        LoadOutputs(oa, ob, a, a + 1);
        AddFourKeysTwoHeads(oa, ob, values, a, first);
        StoreOutputs(oa, ob, a, a + 1);
    }
}

// Tile t + 1's scores interleaved, four keys at a time, with tile t's P·V, then tile t + 1's softmax.
static void DecodePipelined(const float* keys, const float* values, size_t rows, int requests)
{
    for (size_t tile = 0; tile + 3 * Tile <= rows; tile += Tile)
    {
        const float* nextKeys = keys + (tile + Tile) * HeadDim;
        const float* v = values + tile * HeadDim;
        for (int key = 0; key < Tile; key += 4)
        {
            if (requests)
            {
                for (int j = 0; j < 4; j++) Request(nextKeys + (Tile + key + j) * HeadDim);
                for (int j = 0; j < 4; j++) Request(v + (Tile + key + j) * HeadDim);
            }

            ScoreFourRows(nextKeys + key * HeadDim, key);
            AddFourKeys(v, key);
        }

        Softmax();
        memcpy(Probabilities, Scores, sizeof Probabilities);
    }
}

static float SumOneRequesting(const float* data, size_t floats)
{
    __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
    for (size_t i = 0; i < floats; i += 64)
    {
        for (int l = 0; l < 4; l++) _mm_prefetch((const char*)(data + i) + 16384 + 64 * l, REQUEST_HINT);
        a = _mm512_add_ps(a, _mm512_load_ps(data + i));
        b = _mm512_add_ps(b, _mm512_load_ps(data + i + 16));
        c = _mm512_add_ps(c, _mm512_load_ps(data + i + 32));
        d = _mm512_add_ps(d, _mm512_load_ps(data + i + 48));
    }

    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

static float SumTwo(const float* keys, const float* values, size_t floats, int requests)
{
    __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
    for (size_t i = 0; i < floats; i += 32)
    {
        if (requests)
        {
            _mm_prefetch((const char*)(keys + i) + 16384, REQUEST_HINT);
            _mm_prefetch((const char*)(keys + i) + 16384 + 64, REQUEST_HINT);
            _mm_prefetch((const char*)(values + i) + 16384, REQUEST_HINT);
            _mm_prefetch((const char*)(values + i) + 16384 + 64, REQUEST_HINT);
        }

        a = _mm512_add_ps(a, _mm512_load_ps(keys + i));
        b = _mm512_add_ps(b, _mm512_load_ps(values + i));
        c = _mm512_add_ps(c, _mm512_load_ps(keys + i + 16));
        d = _mm512_add_ps(d, _mm512_load_ps(values + i + 16));
    }

    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

// One tile in decode's order: the four heads' scores (row by row, or four rows a line at a time), the softmax, P·V in
// two passes; with requests, the next tile's key rows (at nextKeys) through the score loop and its value rows (at
// nextValues) through the first P·V pass.
static void DecodeTile(const float* k, const float* v, const float* nextKeys, const float* nextValues, int requests, int byRow)
{
    for (int key = 0; key < Tile; key += 4)
    {
        if (requests) for (int j = 0; j < 4; j++) Request(nextKeys + (key + j) * HeadDim);
        if (byRow) for (int j = 0; j < 4; j++) ScoreRow(k + (key + j) * HeadDim, key + j);
        else ScoreFourRows(k + key * HeadDim, key);
    }

    Softmax();
    AddValues(v, 0, 1, requests ? nextValues : NULL);
    AddValues(v, 2, 3, NULL);
}

// Decode's order over one array laid out as [32 key rows][their 32 value rows] per tile: one stream, not two.
static void DecodeInterleaved(const float* data, size_t rows, int requests)
{
    for (size_t tile = 0; tile + 2 * Tile <= rows; tile += Tile)
    {
        const float* k = data + 2 * tile * HeadDim;
        const float* v = k + Tile * HeadDim;
        const float* nextK = v + Tile * HeadDim;
        DecodeTile(k, v, nextK, nextK + Tile * HeadDim, requests, 0);
    }
}

static float SumFour(const float* keys, const float* values, size_t floats)
{
    const float *k2 = keys + floats / 2, *v2 = values + floats / 2;
    __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
    for (size_t i = 0; i < floats / 2; i += 16)
    {
        a = _mm512_add_ps(a, _mm512_load_ps(keys + i));
        b = _mm512_add_ps(b, _mm512_load_ps(values + i));
        c = _mm512_add_ps(c, _mm512_load_ps(k2 + i));
        d = _mm512_add_ps(d, _mm512_load_ps(v2 + i));
    }

    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

// Heads a and a + 1: the next tile's scores for four keys (8 accumulators) beside this tile's P·V for four keys (16
// accumulators held in registers through the pass), so keys and values are read side by side.
static void FusedPass(const float* nextKeys, const float* values, int a, const float* requestKeys, const float* requestValues)
{
    __m512 oa[8], ob[8];
    LoadOutputs(oa, ob, a, a + 1);
    for (int key = 0; key < Tile; key += 4)
    {
        if (requestKeys) for (int j = 0; j < 4; j++) Request(requestKeys + (key + j) * HeadDim);
        if (requestValues) for (int j = 0; j < 4; j++) Request(requestValues + (key + j) * HeadDim);
        const float* rows = nextKeys + key * HeadDim;
        __m512 s00 = _mm512_setzero_ps(), s01 = s00, s02 = s00, s03 = s00, s10 = s00, s11 = s00, s12 = s00, s13 = s00;
        for (int d = 0; d < HeadDim; d += 16)
        {
            __m512 k0 = _mm512_load_ps(rows + d), k1 = _mm512_load_ps(rows + HeadDim + d);
            __m512 k2 = _mm512_load_ps(rows + 2 * HeadDim + d), k3 = _mm512_load_ps(rows + 3 * HeadDim + d);
            __m512 q = _mm512_load_ps(Queries[a] + d);
            s00 = _mm512_fmadd_ps(q, k0, s00); s01 = _mm512_fmadd_ps(q, k1, s01); s02 = _mm512_fmadd_ps(q, k2, s02); s03 = _mm512_fmadd_ps(q, k3, s03);
            q = _mm512_load_ps(Queries[a + 1] + d);
            s10 = _mm512_fmadd_ps(q, k0, s10); s11 = _mm512_fmadd_ps(q, k1, s11); s12 = _mm512_fmadd_ps(q, k2, s12); s13 = _mm512_fmadd_ps(q, k3, s13);
        }

        __m128 first = SumEach(s00, s01, s02, s03), second = SumEach(s10, s11, s12, s13);
        _mm_store_ps(Scores[a] + key, first);
        _mm_store_ps(Scores[a + 1] + key, second);
        AddFourKeysTwoHeads(oa, ob, values, a, key);
    }

    StoreOutputs(oa, ob, a, a + 1);
}

// Tile t's P·V fused with tile t + 1's scores, two heads per pass: the first pass reads both from memory.
static void DecodeFused(const float* keys, const float* values, size_t rows, int requests)
{
    for (size_t tile = 0; tile + 3 * Tile <= rows; tile += Tile)
    {
        const float* nextKeys = keys + (tile + Tile) * HeadDim;
        const float* v = values + tile * HeadDim;
        FusedPass(nextKeys, v, 0, requests ? nextKeys + Tile * HeadDim : NULL, requests ? v + Tile * HeadDim : NULL);
        FusedPass(nextKeys, v, 2, NULL, NULL);
        Softmax();
        memcpy(Probabilities, Scores, sizeof Probabilities);
    }
}


// Two blocks' tiles at once: the score loop takes four keys of each block in turn (two key streams side by side), then
// each block's softmax and P·V (the scores of block B kept apart; its P·V accumulates into the same outputs, as the
// memory traffic and arithmetic are what is measured).
static void DecodeTwoBlocksSideBySide(const float* keys, const float* values, size_t rows, int requests)
{
    size_t half = rows / 2;
    for (size_t tile = 0; tile + 2 * Tile <= half; tile += Tile)
    {
        const float* ka = keys + tile * HeadDim; const float* kb = keys + (half + tile) * HeadDim;
        const float* va = values + tile * HeadDim; const float* vb = values + (half + tile) * HeadDim;
        for (int key = 0; key < Tile; key += 4)
        {
            if (requests) for (int j = 0; j < 4; j++) { Request(ka + (Tile + key + j) * HeadDim); Request(kb + (Tile + key + j) * HeadDim); }
            ScoreFourRows(ka + key * HeadDim, key);
            ScoreFourRows(kb + key * HeadDim, key);
        }

        Softmax();
        AddValues(va, 0, 1, requests ? va + Tile * HeadDim : NULL);
        AddValues(va, 2, 3, NULL);
        Softmax();
        AddValues(vb, 0, 1, requests ? vb + Tile * HeadDim : NULL);
        AddValues(vb, 2, 3, NULL);
    }
}

// P·V for heads a, b over the tile's 32 keys: key k is quarter k % 4's row at offset k / 4.
static void AddValuesRegions(const float* const* v, int a, int b, int request)
{
    __m512 oa[8], ob[8];
    LoadOutputs(oa, ob, a, b);
    for (int k = 0; k < Tile; k++)
    {
        const float* row = v[k & 3] + (k >> 2) * HeadDim;
        if (request) Request(row + (Tile / 4) * HeadDim);
        __m512 pa = _mm512_set1_ps(Scores[a][k]), pb = _mm512_set1_ps(Scores[b][k]);
        for (int i = 0; i < 8; i++)
        {
            __m512 x = _mm512_load_ps(row + 16 * i);
            oa[i] = _mm512_fmadd_ps(pa, x, oa[i]);
            ob[i] = _mm512_fmadd_ps(pb, x, ob[i]);
        }
    }
    StoreOutputs(oa, ob, a, b);
}

// Four regions: the share's quarters read side by side, a key (and later a value) of each quarter at the same offset in
// every group of four, so each load step touches four distant lines, as the four-stream sum does.
static void DecodeFourRegions(const float* keys, const float* values, size_t rows)
{
    size_t quarter = rows / 4, per = Tile / 4;
    for (size_t at = 0; at + 2 * per <= quarter; at += per)
    {
        const float* k[4]; const float* v[4]; const char* ahead[4];
        for (int j = 0; j < 4; j++) { k[j] = keys + (j * quarter + at) * HeadDim; v[j] = values + (j * quarter + at) * HeadDim; }
        for (int j = 0; j < 4; j++) RequestPagesOf(k[j], v[j], (int)per * HeadDim * (int)sizeof(float)); // one page of each
        for (int g = 0; g < (int)per; g++)
        {
            // each step requests one line of each quarter's next rows: 8 steps x 8 groups = the next 8 rows of each
            for (int j = 0; j < 4; j++) ahead[j] = (const char*)(k[j] + per * HeadDim) + g * 512;
            const float* const rows[4] = { k[0] + g * HeadDim, k[1] + g * HeadDim, k[2] + g * HeadDim, k[3] + g * HeadDim };
            ScoreFourKeys(rows, 4 * g, ahead, 64, 0);
        }
        SoftmaxOnePass();
        AddValuesRegions(v, 0, 1, 1);
        AddValuesRegions(v, 2, 3, 0);
    }
}

// Decode's order, but every phase requests keys and values alike: the score loop the first half of each next-tile row
// of keys and values, the first P·V pass their second halves, so two streams are always in flight.
static void DecodeBothStreams(const float* keys, const float* values, size_t rows, int distance)
{
    for (size_t tile = 0; tile + (1 + distance) * Tile <= rows; tile += Tile)
    {
        const float* k = keys + tile * HeadDim;
        const float* v = values + tile * HeadDim;
        const char* nk = (const char*)(k + distance * Tile * HeadDim);
        const char* nv = (const char*)(v + distance * Tile * HeadDim);
        RequestPages(k, v);
        for (int key = 0; key < Tile; key += 4)
        {
            // 8 steps per group x 2 lines of each = 16 lines = the first halves (4 lines) of the group's 4 rows
            __m512 acc[4][4];
            const float* r = k + key * HeadDim;
            for (int h = 0; h < 4; h++) for (int j = 0; j < 4; j++) acc[h][j] = _mm512_setzero_ps();
            for (int d = 0; d < HeadDim; d += 16)
            {
                int step = d / 16; // 0..7: row key + step / 2, lines (step % 2) * 2 .. + 1
                size_t at = (size_t)(key + step / 2) * 512 + (step % 2) * 128;
                _mm_prefetch(nk + at, REQUEST_HINT); _mm_prefetch(nk + at + 64, REQUEST_HINT);
                _mm_prefetch(nv + at, REQUEST_HINT); _mm_prefetch(nv + at + 64, REQUEST_HINT);
                __m512 k0 = _mm512_load_ps(r + d), k1 = _mm512_load_ps(r + HeadDim + d);
                __m512 k2 = _mm512_load_ps(r + 2 * HeadDim + d), k3 = _mm512_load_ps(r + 3 * HeadDim + d);
                for (int h = 0; h < 4; h++)
                {
                    __m512 q = _mm512_load_ps(Queries[h] + d);
                    acc[h][0] = _mm512_fmadd_ps(q, k0, acc[h][0]); acc[h][1] = _mm512_fmadd_ps(q, k1, acc[h][1]);
                    acc[h][2] = _mm512_fmadd_ps(q, k2, acc[h][2]); acc[h][3] = _mm512_fmadd_ps(q, k3, acc[h][3]);
                }
            }
            for (int j = 0; j < 4; j++) StoreScores(SumEach(acc[0][j], acc[1][j], acc[2][j], acc[3][j]), key + j);
        }
        SoftmaxOnePass();
        __m512 oa[8], ob[8];
        LoadOutputs(oa, ob, 0, 1);
        for (int key = 0; key < Tile; key++)
        {
            for (int l = 4; l < 8; l += 2) { _mm_prefetch(nk + key * 512 + 64 * l, REQUEST_HINT); _mm_prefetch(nk + key * 512 + 64 * l + 64, REQUEST_HINT);
                                              _mm_prefetch(nv + key * 512 + 64 * l, REQUEST_HINT); _mm_prefetch(nv + key * 512 + 64 * l + 64, REQUEST_HINT); }
            __m512 pa = _mm512_set1_ps(Scores[0][key]), pb = _mm512_set1_ps(Scores[1][key]);
            for (int i = 0; i < 8; i++)
            {
                __m512 x = _mm512_load_ps(v + key * HeadDim + 16 * i);
                oa[i] = _mm512_fmadd_ps(pa, x, oa[i]); ob[i] = _mm512_fmadd_ps(pb, x, ob[i]);
            }
        }
        StoreOutputs(oa, ob, 0, 1);
        AddValues(v, 2, 3, NULL);
    }
}

// Decode's order of reads alone: each tile's 16 KiB of keys, then its 16 KiB of values, summed; with `requests`, every
// step also asks for the same lines a tile on.
static void SumTileBursts(const float* keys, const float* values, size_t rows, int requests)
{
    __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
    for (size_t tile = 0; tile + 2 * Tile <= rows; tile += Tile)
        for (int stream = 0; stream < 2; stream++)
        {
            const float* x = (stream ? values : keys) + tile * HeadDim;
            for (int i = 0; i < Tile * HeadDim; i += 64)
            {
                if (requests) for (int line = 0; line < 4; line++) _mm_prefetch((const char*)(x + Tile * HeadDim + i) + 64 * line, REQUEST_HINT);
                a = _mm512_add_ps(a, _mm512_load_ps(x + i));
                b = _mm512_add_ps(b, _mm512_load_ps(x + i + 16));
                c = _mm512_add_ps(c, _mm512_load_ps(x + i + 32));
                d = _mm512_add_ps(d, _mm512_load_ps(x + i + 48));
            }
        }

    Sink = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

// Keys before values in phases of PhaseRows rows: every key tile of the phase scored (the next tile's lines requested
// line by line, the pages 64 KiB on a 64 KiB stretch at a time), its scores kept in PhaseScores, then the value tiles.
static __thread float PhaseScores[PhaseRows / Tile][4][Tile] __attribute__((aligned(64)));
static void DecodePhases(const float* keys, const float* values, size_t rows)
{
    for (size_t phase = 0; phase + PhaseRows + Tile <= rows; phase += PhaseRows)
    {
        for (int tile = 0; tile < PhaseRows / Tile; tile++)
        {
            const float* k = keys + (phase + tile * Tile) * HeadDim;
            if (tile % 4 == 0) RequestPagesOf(k, k, PagesAheadBytes);
            for (int key = 0; key < Tile; key += 4) ScoreFourRowsRequesting(k + key * HeadDim, key, (const char*)(k + (Tile + key) * HeadDim), 0);
            memcpy(PhaseScores[tile], Scores, sizeof Scores);
        }

        for (int tile = 0; tile < PhaseRows / Tile; tile++)
        {
            const float* v = values + (phase + tile * Tile) * HeadDim;
            if (tile % 4 == 0) RequestPagesOf(v, v, PagesAheadBytes);
            memcpy(Scores, PhaseScores[tile], sizeof Scores);
            SoftmaxOnePass();
            AddValues(v, 0, 1, v + Tile * HeadDim);
            AddValues(v, 2, 3, NULL);
        }
    }
}

static void Decode(const float* keys, const float* values, size_t rows, int variant)
{
    int requests = Kinds[variant].Requests;
    switch (Kinds[variant].Order)
    {
        case LineByLine:
        case LineByLinePages:
        case FmasOnlyPages:
        case PagesOnly:
        {
            Order order = Kinds[variant].Order;
            for (size_t tile = 0; tile + 2 * Tile <= rows; tile += Tile)
            {
                const float* k = keys + tile * HeadDim;
                const float* v = values + tile * HeadDim;
                if (order != LineByLine) RequestPages(k, v);
                int lines = order != PagesOnly; // pages only: no line requests, the lines left to the hardware prefetchers
                for (int key = 0; key < Tile; key += 4)
                    ScoreFourRowsRequesting(k + key * HeadDim, key, lines ? (const char*)(k + (Tile + key) * HeadDim) : NULL, order == FmasOnlyPages);
                if (order != FmasOnlyPages) SoftmaxOnePass();
                AddValues(v, 0, 1, lines ? v + Tile * HeadDim : NULL);
                AddValues(v, 2, 3, NULL);
            }

            return;
        }

        case FourRegions: DecodeFourRegions(keys, values, rows); return;
        case BothStreams: DecodeBothStreams(keys, values, rows, requests); return;
        case TileBursts: SumTileBursts(keys, values, rows, requests); return;
        case Phases: DecodePhases(keys, values, rows); return;
        case TwoStreamSum: Sink = SumTwo(keys, values, rows * HeadDim, requests); return;
        case OneStreamSum: Sink = SumOneRequesting(keys, rows * HeadDim) + SumOneRequesting(values, rows * HeadDim); return;
        case FourStreamSum: Sink = SumFour(keys, values, rows * HeadDim); return;
        case InterleavedTiles: DecodeInterleaved(keys, rows, requests); return;
        case Pipelined: DecodePipelined(keys, values, rows, requests); return;
        case Fused: DecodeFused(keys, values, rows, requests); return;
        case TwoBlocksSideBySide: DecodeTwoBlocksSideBySide(keys, values, rows, requests); return;
        case TwoBlocks:
        {
            // The share's two halves as two blocks, a tile of each in turn: four streams (two of keys, two of values).
            size_t half = rows / 2;
            for (size_t tile = 0; tile + 2 * Tile <= half; tile += Tile)
            {
                for (size_t first = tile; first <= half + tile; first += half)
                {
                    const float* k = keys + first * HeadDim;
                    const float* v = values + first * HeadDim;
                    DecodeTile(k, v, k + Tile * HeadDim, v + Tile * HeadDim, requests, 1);
                }
            }

            return;
        }
        case Resident:
        case KeysByRow:
        case KeysFourByLine:
        {
            // Resident: the same tiles as KeysFourByLine, but the first ResidentTiles of the share over and over, so every
            // read hits L2; otherwise the share front to back (tile + Tile never wraps there).
            size_t span = Kinds[variant].Order == Resident ? ResidentTiles * Tile : rows;
            for (size_t tile = 0; tile + 2 * Tile <= rows; tile += Tile)
            {
                size_t at = tile % span, next = (at + Tile) % span;
                DecodeTile(keys + at * HeadDim, values + at * HeadDim, keys + next * HeadDim, values + next * HeadDim, requests, Kinds[variant].Order == KeysByRow);
            }

            return;
        }
    }
}

static float Sum(const float* data, size_t floats)
{
    __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
    for (size_t i = 0; i < floats; i += 64)
    {
        a = _mm512_add_ps(a, _mm512_load_ps(data + i));
        b = _mm512_add_ps(b, _mm512_load_ps(data + i + 16));
        c = _mm512_add_ps(c, _mm512_load_ps(data + i + 32));
        d = _mm512_add_ps(d, _mm512_load_ps(data + i + 48));
    }

    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

typedef struct { const float *Keys, *Values; size_t Rows; int Variant; } Share;

static void* RunShare(void* argument)
{
    Share* share = argument;
    for (int h = 0; h < 4; h++) for (int d = 0; d < HeadDim; d++) Queries[h][d] = 0.01f;
    if (share->Variant < 0) Sink = Sum(share->Keys, share->Rows * HeadDim) + Sum(share->Values, share->Rows * HeadDim);
    else Decode(share->Keys, share->Values, share->Rows, share->Variant);
    return NULL;
}

// GB/s of keys and values read by `threads` threads, each over its own contiguous share; variant -1 is the plain sum.
static double Measure(const float* keys, const float* values, size_t rows, int variant, int threads)
{
    pthread_t workers[2];
    Share shares[2];
    double start = Now();
    for (int t = 0; t < threads; t++)
    {
        shares[t] = variant >= 0 && Kinds[variant].Order == InterleavedTiles
            ? (Share){ keys + 2 * t * (rows / threads) * HeadDim, NULL, rows / threads, variant }
            : (Share){ keys + t * (rows / threads) * HeadDim, values + t * (rows / threads) * HeadDim, rows / threads, variant };
        pthread_create(&workers[t], NULL, RunShare, &shares[t]);
    }

    for (int t = 0; t < threads; t++) pthread_join(workers[t], NULL);
    return 2.0 * rows * HeadDim * sizeof(float) / (Now() - start) / 1e9;
}

static int Ascending(const void* a, const void* b) { double x = *(const double*)a, y = *(const double*)b; return x < y ? -1 : x > y; }

// The variant of Kinds with this order and requests (the last lines compare three of them).
static int IndexOf(Order order, int requests)
{
    for (int v = 0; v < Variants; v++) if (Kinds[v].Order == order && Kinds[v].Requests == requests) return v;
    return -1;
}

int main(int argc, char** argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 7;
    if (rounds < 1 || rounds > 64) { fprintf(stderr, "rounds: 1 to 64\n"); return 1; }
    size_t bytes = 256u << 20, rows = bytes / (HeadDim * sizeof(float));
    // One allocation: the values follow the keys, so the interleaved variant reads the same 512 MiB as one array.
    float* keys = aligned_alloc(2u << 20, 2 * bytes);
    float* values = keys + bytes / sizeof(float);
    madvise(keys, 2 * bytes, MADV_HUGEPAGE);
    memset(keys, 0, 2 * bytes);
    for (int threads = 1; threads <= 2; threads++)
    {
        double probe[64], share[Variants][64];
        for (int r = 0; r < rounds; r++)
        {
            probe[r] = Measure(keys, values, rows, -1, threads);
            for (int v = 0; v < Variants; v++) share[v][r] = Measure(keys, values, rows, v, threads) / probe[r];
        }

        qsort(probe, rounds, sizeof(double), Ascending);
        printf("%d thread(s): probe median %.1f GB/s; decode-shaped loop as a share of the probe in the same round (median, quartiles)\n", threads, probe[rounds / 2]);
        for (int v = 0; v < Variants; v++)
        {
            qsort(share[v], rounds, sizeof(double), Ascending);
            printf("  %-26s %.2f (%.2f-%.2f)\n", Kinds[v].Name, share[v][rounds / 2], share[v][rounds / 4], share[v][3 * rounds / 4]);
        }

        // Shares of the one-stream probe, medians: t(arithmetic) + t(memory) per byte, against the four-stream sum.
        int decodeOrder = IndexOf(KeysFourByLine, 1);
        double four = share[IndexOf(FourStreamSum, 0)][rounds / 2], arithmetic = share[IndexOf(Resident, 1)][rounds / 2];
        double serial = 1.0 / (1.0 / arithmetic + 1.0 / four);
        printf("  against the four-stream sum: \"%s\" reads %.2f; with no overlap of its arithmetic (L2 only) and the\n"
               "  four-stream read, it would read %.2f; with full overlap, 1.00\n", Kinds[decodeOrder].Name, share[decodeOrder][rounds / 2] / four, serial / four);
    }

    return 0;
}
