/*
 * RFC 6455 section 5.3 masking: payload byte i is XORed with key[i % 4].
 *
 * The work is done on 64-bit words holding the key twice, rotated to the
 * right phase.  The word loops are plain counted loops over memcpy loads
 * and stores (so any alignment is legal) that the compiler turns into
 * 16-byte SIMD at -O3 with the baseline instruction set (SSE2 on x86_64,
 * NEON on aarch64; -fopt-info-vec shows it for GCC 12).  No -march flag is
 * needed: past 1 KiB the loops run at cache or memory bandwidth, and AVX2
 * measured no faster there.
 */
#include <string.h>

#include "wsstack.h"

/* 8 key bytes starting at phase `phase`: XOR with a word masks 8 payload
 * bytes whose first byte sits at that phase.  Since 8 is a multiple of 4 the
 * phase is the same for every following word. */
static inline uint64_t key_word(const uint8_t *key, size_t phase)
{
    uint8_t bytes[8];
    for (size_t i = 0; i < 8; i++)
        bytes[i] = key[(phase + i) & 3];
    uint64_t word;
    memcpy(&word, bytes, sizeof word);
    return word;
}

/* Bytes to process one at a time before p is 8-byte aligned (at most n),
 * so the word loop's stores are aligned and never split a cache line. */
static inline size_t head_length(const void *p, size_t n)
{
    size_t head = (size_t)(-(uintptr_t)p) & 7;
    return head < n ? head : n;
}

void ws_mask_inplace(uint8_t *buf, size_t n, const uint8_t *key, size_t offset)
{
    size_t i = 0;
    size_t head = head_length(buf, n);
    for (; i < head; i++)
        buf[i] ^= key[(offset + i) & 3];

    uint64_t k = key_word(key, offset + i);
    uint8_t *p = buf + i;
    size_t words = (n - i) / 8;
    for (size_t w = 0; w < words; w++) {
        uint64_t v;
        memcpy(&v, p + 8 * w, sizeof v);
        v ^= k;
        memcpy(p + 8 * w, &v, sizeof v);
    }

    for (i += 8 * words; i < n; i++)
        buf[i] ^= key[(offset + i) & 3];
}

void ws_mask_copy(uint8_t *WS_RESTRICT dst, const uint8_t *WS_RESTRICT src,
                  size_t n, const uint8_t *key, size_t offset)
{
    size_t i = 0;
    size_t head = head_length(dst, n);
    for (; i < head; i++)
        dst[i] = src[i] ^ key[(offset + i) & 3];

    uint64_t k = key_word(key, offset + i);
    uint8_t *d = dst + i;
    const uint8_t *s = src + i;
    size_t words = (n - i) / 8;
    for (size_t w = 0; w < words; w++) {
        uint64_t v;
        memcpy(&v, s + 8 * w, sizeof v);
        v ^= k;
        memcpy(d + 8 * w, &v, sizeof v);
    }

    for (i += 8 * words; i < n; i++)
        dst[i] = src[i] ^ key[(offset + i) & 3];
}
