/*
 * wsstack C speedups: masking, incremental UTF-8 validation and frame
 * header checks.  Plain C99, no Python API: the cffi wrappers in
 * src/wsstack/_cspeedups.py and the fast calls in fastcall.c own every
 * object and pass raw pointers here.
 *
 * src/wsstack/_speedups_build.py repeats these declarations for cffi; keep
 * the two in step.
 */
#ifndef WSSTACK_H
#define WSSTACK_H

#include <stddef.h>
#include <stdint.h>

#if defined(_MSC_VER)
#define WS_RESTRICT __restrict
#else
#define WS_RESTRICT restrict
#endif

/* ---- masking (mask.c) ------------------------------------------------- */

/*
 * XOR buf[0..n) with the 4-byte key, starting at key[offset & 3], in place.
 * The offset lets a payload that arrives in pieces be unmasked piece by
 * piece: pass the number of payload bytes already unmasked.
 */
void ws_mask_inplace(uint8_t *buf, size_t n, const uint8_t *key, size_t offset);

/* Same, reading src and writing dst (which must not overlap). */
void ws_mask_copy(uint8_t *WS_RESTRICT dst, const uint8_t *WS_RESTRICT src,
                  size_t n, const uint8_t *key, size_t offset);

/* ---- UTF-8 (utf8.c) ----------------------------------------------------- */

/*
 * State carried between ws_utf8_validate calls; start with WS_UTF8_ACCEPT.
 * ACCEPT: everything so far is complete, valid UTF-8.  REJECT: invalid, and
 * it stays invalid.  Any other value: in the middle of a code point that
 * can still be completed validly.
 */
#define WS_UTF8_ACCEPT 6
#define WS_UTF8_REJECT 0

uint32_t ws_utf8_validate(uint32_t state, const uint8_t *p, size_t n);

/* ---- frame headers (scan.c) -------------------------------------------- */

#define WS_OK 0
#define WS_ERR_RESERVED_OPCODE 1
#define WS_ERR_RSV 2
#define WS_ERR_MASK_REQUIRED 3
#define WS_ERR_MASK_FORBIDDEN 4
#define WS_ERR_CONTROL_TOO_LONG 5
#define WS_ERR_CONTROL_FRAGMENTED 6
#define WS_ERR_LENGTH_HIGH_BIT 7
#define WS_ERR_FRAME_TOO_BIG 8
#define WS_INCOMPLETE (-1)

typedef struct {
    uint8_t head;           /* first header byte: FIN, RSV bits, opcode */
    int masked;
    size_t header_length;   /* including the masking key */
    uint64_t payload_length;
} ws_header;

/*
 * Check the frame header at p (avail bytes available).  Returns WS_OK and
 * fills *out once the whole header (masking key included) has arrived and
 * passed every check; WS_INCOMPLETE while more bytes are needed to decide;
 * otherwise the WS_ERR_* code of the first check that fails.
 *
 * mask_required: 1 if every frame must be masked (server side), 0 if none
 * may be (client side).  allowed_rsv: RSV bits (0x70 mask of the first
 * byte) that negotiated extensions permit.  max_frame_size: payload limit,
 * UINT64_MAX for none.
 */
int ws_parse_header(const uint8_t *p, size_t avail, int mask_required, unsigned allowed_rsv,
                    uint64_t max_frame_size, ws_header *out);

#endif /* WSSTACK_H */
