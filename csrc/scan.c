/*
 * The receive hot path: one call walks every complete frame in a buffer,
 * validates its header (RFC 6455 section 5.2), unmasks the payload in place
 * and records where it is.  Doing the whole loop in C means a burst of
 * small frames costs one foreign call instead of several per frame.
 *
 * Header checks run in a fixed order, shared with the Python version in
 * src/wsstack/_pyspeedups.py: reserved opcode, RSV bits, control frame
 * without FIN, control frame length, high bit of a 64-bit length,
 * max_frame_size, mask bit.  A check is made as soon as the bytes it needs
 * have arrived, and the later checks wait for the earlier ones; no check
 * needs the masking key or the payload, so a bad or oversized header is
 * refused without buffering its payload.
 */
#include "wsstack.h"

static inline int is_reserved_opcode(unsigned opcode)
{
    return (opcode >= 0x3 && opcode <= 0x7) || opcode >= 0xB;
}

static inline uint64_t load_be16(const uint8_t *p)
{
    return (uint64_t)p[0] << 8 | p[1];
}

static inline uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

uint64_t ws_scan(uint8_t *buf, size_t len, size_t pos, int mask_required,
                 unsigned allowed_rsv, uint64_t max_frame_size, uint64_t *out,
                 size_t max_records)
{
    size_t records = 0;
    unsigned error = 0;

    while (records < max_records && len - pos >= 2) {
        size_t avail = len - pos;
        uint8_t b0 = buf[pos], b1 = buf[pos + 1];
        unsigned opcode = b0 & 0x0F;

        if (is_reserved_opcode(opcode)) {
            error = WS_ERR_RESERVED_OPCODE;
            break;
        }
        if (b0 & 0x70 & ~allowed_rsv) {
            error = WS_ERR_RSV;
            break;
        }
        if (opcode >= 0x8) {
            if (!(b0 & 0x80)) {
                error = WS_ERR_CONTROL_FRAGMENTED;
                break;
            }
            if ((b1 & 0x7F) > 125) {
                error = WS_ERR_CONTROL_TOO_LONG;
                break;
            }
        }

        uint64_t length = b1 & 0x7F;
        size_t header = 2;
        if (length == 126) {
            header = 4;
            if (avail < header)
                break;
            length = load_be16(buf + pos + 2);
        } else if (length == 127) {
            header = 10;
            if (avail < header)
                break;
            length = load_be64(buf + pos + 2);
            if (length >> 63) {
                error = WS_ERR_LENGTH_HIGH_BIT;
                break;
            }
        }
        if (length > max_frame_size) {
            error = WS_ERR_FRAME_TOO_BIG;
            break;
        }

        int masked = b1 >> 7;
        if (masked != (mask_required != 0)) {
            error = masked ? WS_ERR_MASK_FORBIDDEN : WS_ERR_MASK_REQUIRED;
            break;
        }
        if (masked)
            header += 4;
        if (avail < header || avail - header < length)
            break;

        size_t start = pos + header;
        size_t end = start + (size_t)length;
        if (masked)
            ws_mask_inplace(buf + start, (size_t)length, buf + start - 4, 0);
        out[3 * records] = b0;
        out[3 * records + 1] = start;
        out[3 * records + 2] = end;
        records++;
        pos = end;
    }

    out[3 * records] = pos;
    return (uint64_t)records << 8 | error;
}
