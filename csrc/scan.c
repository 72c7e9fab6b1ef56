/*
 * Frame header checks (RFC 6455 section 5.2), shared by the scanner in
 * fastcall.c and kept in the same order as the Python scanner in
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

int ws_parse_header(const uint8_t *p, size_t avail, int mask_required, unsigned allowed_rsv,
                    uint64_t max_frame_size, ws_header *out)
{
    if (avail < 2)
        return WS_INCOMPLETE;
    uint8_t b0 = p[0], b1 = p[1];
    unsigned opcode = b0 & 0x0F;

    if (is_reserved_opcode(opcode))
        return WS_ERR_RESERVED_OPCODE;
    if (b0 & 0x70 & ~allowed_rsv)
        return WS_ERR_RSV;
    if (opcode >= 0x8) {
        if (!(b0 & 0x80))
            return WS_ERR_CONTROL_FRAGMENTED;
        if ((b1 & 0x7F) > 125)
            return WS_ERR_CONTROL_TOO_LONG;
    }

    uint64_t length = b1 & 0x7F;
    size_t header = 2;
    if (length == 126) {
        header = 4;
        if (avail < header)
            return WS_INCOMPLETE;
        length = (uint64_t)p[2] << 8 | p[3];
    } else if (length == 127) {
        header = 10;
        if (avail < header)
            return WS_INCOMPLETE;
        length = 0;
        for (int i = 2; i < 10; i++)
            length = length << 8 | p[i];
        if (length >> 63)
            return WS_ERR_LENGTH_HIGH_BIT;
    }
    if (length > max_frame_size)
        return WS_ERR_FRAME_TOO_BIG;

    int masked = b1 >> 7;
    if (masked != (mask_required != 0))
        return masked ? WS_ERR_MASK_FORBIDDEN : WS_ERR_MASK_REQUIRED;
    if (masked)
        header += 4;
    if (avail < header)
        return WS_INCOMPLETE;

    out->head = b0;
    out->header_length = header;
    out->masked = masked;
    out->payload_length = length;
    return WS_OK;
}
