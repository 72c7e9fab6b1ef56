/*
 * wsstack C speedups: masking, incremental UTF-8 validation and the frame
 * scanner.  Plain C99, no Python API: the cffi wrappers in
 * src/wsstack/_cspeedups.py own every object and pass raw pointers here.
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

/* ---- frame scanner (scan.c) --------------------------------------------- */

#define WS_ERR_RESERVED_OPCODE 1
#define WS_ERR_RSV 2
#define WS_ERR_MASK_REQUIRED 3
#define WS_ERR_MASK_FORBIDDEN 4
#define WS_ERR_CONTROL_TOO_LONG 5
#define WS_ERR_CONTROL_FRAGMENTED 6
#define WS_ERR_LENGTH_HIGH_BIT 7
#define WS_ERR_FRAME_TOO_BIG 8

/*
 * Walk the complete frames in buf[pos..len) (pos <= len), unmasking payloads
 * in place.
 *
 * For each frame, out receives three values: the first header byte, and the
 * start and end offsets (absolute, into buf) of its payload.  At most
 * max_records frames are walked per call; out must hold 3 * max_records + 1
 * values, because the offset just past the last walked frame is stored
 * after the last record.
 *
 * mask_required: 1 if every frame must be masked (server side), 0 if none
 * may be (client side).  allowed_rsv: RSV bits (0x70 mask of the first
 * byte) that negotiated extensions permit.  max_frame_size: payload limit,
 * UINT64_MAX for none.
 *
 * Returns (records << 8) | error, where error is 0 or a WS_ERR_* code for
 * the frame at the stored offset.  Packing both into the return value keeps
 * the Python side to one call and one unpack.
 */
uint64_t ws_scan(uint8_t *buf, size_t len, size_t pos, int mask_required,
                 unsigned allowed_rsv, uint64_t max_frame_size, uint64_t *out,
                 size_t max_records);

#endif /* WSSTACK_H */
