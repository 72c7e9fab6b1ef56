/*
 * Incremental UTF-8 validation, exactly RFC 3629: no overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
 *
 * A text message may be split across frames anywhere, even inside a code
 * point, and RFC 6455 section 8.1 wants it failed as soon as the bytes so
 * far cannot be a prefix of valid UTF-8.  A deterministic automaton gives
 * exactly that: its state says how much of a code point is still missing
 * and which range the next byte must fall in, and every byte that cannot
 * continue valid text moves it to REJECT, where it stays.
 *
 * Speed: the automaton is "shift-based".  Each state is a 6-bit offset, and
 * the table row of a byte value packs, at each state's offset, the offset
 * of the state that byte leads to.  One step is then a table load that
 * depends only on the input byte, and one shift that depends on the state,
 * so the chain from one byte to the next is a single shift whatever the
 * mix of code point lengths: no branch to mispredict.  Runs of ASCII are
 * skipped 32 bytes at a time.
 */
#include <string.h>

#include "wsstack.h"

/* State offsets.  REJECT must be 0: a row's low bits are then 0, so it stays
 * put, and every transition a row does not name leads to it.  The header's
 * WS_UTF8_ACCEPT and WS_UTF8_REJECT are the same numbers. */
enum {
    REJECT = 0 * 6,
    ACCEPT = 1 * 6,
    NEED1 = 2 * 6,     /* one more continuation byte, 80..BF */
    NEED2 = 3 * 6,     /* two more */
    NEED3 = 4 * 6,     /* three more */
    AFTER_E0 = 5 * 6,  /* A0..BF, then one more: no overlong 3-byte forms */
    AFTER_ED = 6 * 6,  /* 80..9F, then one more: no surrogates */
    AFTER_F0 = 7 * 6,  /* 90..BF, then two more: no overlong 4-byte forms */
    AFTER_F4 = 8 * 6,  /* 80..8F, then two more: nothing past U+10FFFF */
};

/* The transition from state `from` to state `to`, as bits of a row. */
#define GO(from, to) ((uint64_t)(to) << (from))

/* Rows by byte class.  C0, C1 and F5..FF appear in none but NONE: they can
 * only start overlong forms or code points past U+10FFFF. */
#define NONE 0
#define ROW_ASCII GO(ACCEPT, ACCEPT)
#define ROW_80_8F (GO(NEED1, ACCEPT) | GO(NEED2, NEED1) | GO(NEED3, NEED2) | \
                   GO(AFTER_ED, NEED1) | GO(AFTER_F4, NEED2))
#define ROW_90_9F (GO(NEED1, ACCEPT) | GO(NEED2, NEED1) | GO(NEED3, NEED2) | \
                   GO(AFTER_ED, NEED1) | GO(AFTER_F0, NEED2))
#define ROW_A0_BF (GO(NEED1, ACCEPT) | GO(NEED2, NEED1) | GO(NEED3, NEED2) | \
                   GO(AFTER_E0, NEED1) | GO(AFTER_F0, NEED2))
#define ROW_2 GO(ACCEPT, NEED1)
#define ROW_3 GO(ACCEPT, NEED2)
#define ROW_4 GO(ACCEPT, NEED3)
#define X4(v) v, v, v, v
#define X16(v) X4(v), X4(v), X4(v), X4(v)

static const uint64_t transitions[256] = {
    X16(ROW_ASCII), X16(ROW_ASCII), X16(ROW_ASCII), X16(ROW_ASCII), /* 00..3F */
    X16(ROW_ASCII), X16(ROW_ASCII), X16(ROW_ASCII), X16(ROW_ASCII), /* 40..7F */
    X16(ROW_80_8F), X16(ROW_90_9F), X16(ROW_A0_BF), X16(ROW_A0_BF), /* 80..BF */
    NONE, NONE, ROW_2, ROW_2, X4(ROW_2), X4(ROW_2), X4(ROW_2),      /* C0..CF */
    X16(ROW_2),                                                     /* D0..DF */
    GO(ACCEPT, AFTER_E0), ROW_3, ROW_3, ROW_3, X4(ROW_3), X4(ROW_3), /* E0..EB */
    ROW_3, GO(ACCEPT, AFTER_ED), ROW_3, ROW_3,                      /* EC..EF */
    GO(ACCEPT, AFTER_F0), ROW_4, ROW_4, ROW_4,                      /* F0..F3 */
    GO(ACCEPT, AFTER_F4), NONE, NONE, NONE, X4(NONE), X4(NONE),     /* F4..FF */
};

/* One step.  The state is kept unmasked between steps; only its low 6 bits
 * matter, and `& 63` is free in a shift count on common CPUs. */
static inline uint64_t step(uint64_t state, uint8_t byte)
{
    return transitions[byte] >> (state & 63);
}

#define HIGH_BITS UINT64_C(0x8080808080808080)

/* 1 if the 32 bytes at p are all ASCII.  A fixed-length loop with no exit,
 * so compilers turn it into SIMD ORs. */
static inline int ascii32(const uint8_t *p)
{
    uint64_t any = 0;
    for (int i = 0; i < 4; i++) {
        uint64_t word;
        memcpy(&word, p + 8 * i, sizeof word);
        any |= word;
    }
    return !(any & HIGH_BITS);
}

uint32_t ws_utf8_validate(uint32_t state, const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n;
    uint64_t s = state;

    for (;;) {
        if ((s & 63) == ACCEPT) {
            while ((size_t)(end - p) >= 32 && ascii32(p))
                p += 32;
        }
        if ((size_t)(end - p) < 32)
            break;
        for (int i = 0; i < 32; i++)
            s = step(s, p[i]);
        p += 32;
        if ((s & 63) == REJECT)
            return WS_UTF8_REJECT;
    }
    while (p < end)
        s = step(s, *p++);
    return (uint32_t)(s & 63);
}
