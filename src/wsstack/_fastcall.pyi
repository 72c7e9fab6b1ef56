# Types of the CPython fast calls in csrc/fastcall.c, for type checkers.
# They take positional arguments only; _pyspeedups holds their Python twins
# and the contract, with the same signatures.
from ._pyspeedups import BytesLike

ERR_RESERVED_OPCODE: int
ERR_RSV: int
ERR_MASK_REQUIRED: int
ERR_MASK_FORBIDDEN: int
ERR_CONTROL_TOO_LONG: int
ERR_CONTROL_FRAGMENTED: int
ERR_LENGTH_HIGH_BIT: int
ERR_FRAME_TOO_BIG: int

def apply_mask(data: BytesLike, key: bytes, offset: int = 0, /) -> bytes: ...
def serialize_frame(first_byte: int, payload: BytesLike, mask_key: bytes | None = None, /) -> bytes: ...
def scan_frames(
    data: BytesLike, pos: int, mask_required: bool, allowed_rsv: int, max_frame_size: int | None, /
) -> tuple[list[int | bytes], int, int]: ...
