/*
 * wsstack._fastcall: the per-frame hot paths as CPython METH_FASTCALL
 * functions.
 *
 * The rest of csrc/ is reached through cffi, which costs about 0.3 us per
 * call once the wrapper's checks, buffer exports and result objects are
 * counted.  These run once or more per frame: scan_frames for every read,
 * serialize_frame (or serialize_text) for every frame sent, apply_mask for what arrives in
 * pieces.  A function that parses its own arguments and builds its own
 * objects brings each call down to the cost of the work, which for a small
 * frame is well under that overhead.  The loops (masking, header checks)
 * are shared with the cffi module.
 *
 * Each function has a Python twin in src/wsstack/_pyspeedups.py that gives
 * the same result or raises the same exception type for any argument, and
 * checks the arguments in the same order.  What that takes costs nothing
 * measurable per call: a range check on an int, and otherwise work done
 * only once the common case (a small int, a simple buffer) has failed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "wsstack.h"

/*
 * The bytes of any buffer, as memoryview(obj) would see them.  The
 * PyBUF_SIMPLE export is what every bytes-like object gives; when it is
 * refused, exporters say so differently (a strided memoryview raises
 * BufferError, a strided numpy array ValueError), so ask again the way
 * memoryview() does and decide here: a non-contiguous buffer is a
 * BufferError, whoever exported it.
 */
static int
get_bytes(PyObject *obj, Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) == 0)
        return 0;
    if (!PyObject_CheckBuffer(obj))
        return -1; /* not a buffer at all: keep the TypeError */
    PyErr_Clear();
    if (PyObject_GetBuffer(obj, view, PyBUF_FULL_RO) < 0)
        return -1;
    if (!PyBuffer_IsContiguous(view, 'C')) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_BufferError, "a C-contiguous buffer is required");
        return -1;
    }
    return 0; /* contiguous after all: buf and len hold its bytes */
}

/* offset & 3 for any int (or __index__), as Python computes it. */
static int
mask_phase(PyObject *value, size_t *phase)
{
    int overflow;
    long long small = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (small == -1 && PyErr_Occurred())
        return -1;
    if (!overflow) {
        *phase = (size_t)(small & 3); /* two's complement: -1 & 3 == 3, as in Python */
        return 0;
    }
    PyObject *index = PyNumber_Index(value);
    if (index == NULL)
        return -1;
    PyObject *three = PyLong_FromLong(3);
    PyObject *low = three == NULL ? NULL : PyNumber_And(index, three);
    Py_XDECREF(three);
    Py_DECREF(index);
    if (low == NULL)
        return -1;
    *phase = (size_t)PyLong_AsLong(low);
    Py_DECREF(low);
    return 0;
}

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "apply_mask(data, key, offset=0)");
        return NULL;
    }
    /* Only offset % 4 matters; a Python int of any size or sign reduces mod 4. */
    size_t offset = 0;
    if (nargs == 3 && mask_phase(args[2], &offset) < 0)
        return NULL;
    Py_buffer key;
    if (get_bytes(args[1], &key) < 0)
        return NULL;
    if (key.len != 4) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "a mask key is 4 bytes");
        return NULL;
    }
    Py_buffer data;
    if (get_bytes(args[0], &data) < 0) {
        PyBuffer_Release(&key);
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, data.len);
    if (out != NULL)
        ws_mask_copy((uint8_t *)PyBytes_AS_STRING(out), (const uint8_t *)data.buf,
                     (size_t)data.len, (const uint8_t *)key.buf, offset);
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    return out;
}

/* The first byte of a frame, from any int in range(256). */
static int
first_byte_of(PyObject *value, uint8_t *first)
{
    int overflow;
    long small = PyLong_AsLongAndOverflow(value, &overflow);
    if (small == -1 && PyErr_Occurred())
        return -1;
    if (overflow || small < 0 || small > 255) {
        PyErr_SetString(PyExc_ValueError, "first_byte must be in range(256)");
        return -1;
    }
    *first = (uint8_t)small;
    return 0;
}

/* A 4-byte mask key's buffer, unless the argument is absent or None (key->buf stays NULL). */
static int
mask_key_of(PyObject *const *args, Py_ssize_t nargs, Py_buffer *key)
{
    key->buf = NULL;
    if (nargs < 3 || args[2] == Py_None)
        return 0;
    if (get_bytes(args[2], key) < 0)
        return -1;
    if (key->len != 4) {
        PyBuffer_Release(key);
        key->buf = NULL;
        PyErr_SetString(PyExc_ValueError, "a mask key is 4 bytes");
        return -1;
    }
    return 0;
}

/*
 * Header and payload in one new object, masked when a key is given: one
 * allocation and one pass over the payload, where building the header and
 * then concatenating takes three objects and two passes.
 */
static PyObject *
build_frame(uint8_t first, const uint8_t *payload, Py_ssize_t len, const uint8_t *key)
{
    uint64_t n = (uint64_t)len;
    uint8_t header[14];
    size_t h = 2;
    header[0] = first;
    if (n < 126) {
        header[1] = (uint8_t)n;
    } else if (n < 65536) {
        header[1] = 126;
        header[2] = (uint8_t)(n >> 8);
        header[3] = (uint8_t)n;
        h = 4;
    } else {
        header[1] = 127;
        for (int i = 0; i < 8; i++)
            header[2 + i] = (uint8_t)(n >> (56 - 8 * i));
        h = 10;
    }
    if (key != NULL) {
        header[1] |= 0x80;
        memcpy(header + h, key, 4);
        h += 4;
    }
    if ((size_t)len > (size_t)PY_SSIZE_T_MAX - h)
        return PyErr_NoMemory();
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(h + (size_t)len));
    if (out == NULL)
        return NULL;
    uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
    memcpy(dst, header, h);
    if (key != NULL)
        ws_mask_copy(dst + h, payload, (size_t)len, key, 0);
    else if (len)
        memcpy(dst + h, payload, (size_t)len);
    return out;
}

/* serialize_frame(first_byte, payload, mask_key=None) -> bytes: a whole frame. */
static PyObject *
serialize_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "serialize_frame(first_byte, payload, mask_key=None)");
        return NULL;
    }
    uint8_t first;
    Py_buffer key;
    if (first_byte_of(args[0], &first) < 0 || mask_key_of(args, nargs, &key) < 0)
        return NULL;
    Py_buffer payload;
    PyObject *out = NULL;
    if (get_bytes(args[1], &payload) == 0) {
        out = build_frame(first, (const uint8_t *)payload.buf, payload.len, (const uint8_t *)key.buf);
        PyBuffer_Release(&payload);
    }
    if (key.buf != NULL)
        PyBuffer_Release(&key);
    return out;
}

/*
 * serialize_text(first_byte, text, mask_key=None) -> bytes
 *
 * serialize_frame(first_byte, text.encode(), mask_key), without the
 * intermediate bytes for ASCII text: CPython stores an ASCII string's
 * characters one byte each, which is their UTF-8, so the frame is built
 * straight from them, saving an allocation and a copy per message.
 */
static PyObject *
text_frame(uint8_t first, PyObject *text, const uint8_t *key)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) /* a legacy string, before 3.12 */
        return NULL;
#endif
    if (PyUnicode_IS_ASCII(text))
        return build_frame(first, (const uint8_t *)PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text), key);
    /* Encoded into a temporary, not PyUnicode_AsUTF8AndSize's copy cached on the
     * string: that would keep a second copy of every large message alive for as
     * long as the application holds the string. */
    PyObject *utf8 = PyUnicode_AsUTF8String(text); /* UnicodeEncodeError for a lone surrogate */
    if (utf8 == NULL)
        return NULL;
    PyObject *out = build_frame(first, (const uint8_t *)PyBytes_AS_STRING(utf8), PyBytes_GET_SIZE(utf8), key);
    Py_DECREF(utf8);
    return out;
}

static int
check_text(PyObject *text, const char *name)
{
    if (PyUnicode_Check(text))
        return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes str, not %.200s", name, Py_TYPE(text)->tp_name);
    return -1;
}

static PyObject *
serialize_text(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "serialize_text(first_byte, text, mask_key=None)");
        return NULL;
    }
    uint8_t first;
    if (first_byte_of(args[0], &first) < 0 || check_text(args[1], "serialize_text") < 0)
        return NULL;
    Py_buffer key;
    if (mask_key_of(args, nargs, &key) < 0)
        return NULL;
    PyObject *out = text_frame(first, args[1], (const uint8_t *)key.buf);
    if (key.buf != NULL)
        PyBuffer_Release(&key);
    return out;
}

/*
 * Masking keys for client frames (RFC 6455 section 5.3 asks for unpredictable
 * ones), from os.urandom in batches of 1,024 keys.  Drawn here, inside the
 * call that frames the message, a key costs a memcpy: drawn in Python (a
 * method call and a slice of the batch) it cost 270 ns a frame, more than
 * framing a 125 B message.  The GIL guards the pool; reset_mask_keys() runs
 * in a forked child (os.register_at_fork, in _cspeedups), so that parent
 * and child never send the same keys.
 */
static PyObject *urandom; /* os.urandom, looked up once */
static uint8_t key_pool[4096];
static size_t key_pos = sizeof key_pool;

static int
fresh_key(uint8_t key[4])
{
    if (key_pos >= sizeof key_pool) {
        PyObject *batch = PyObject_CallFunction(urandom, "n", (Py_ssize_t)sizeof key_pool);
        if (batch == NULL)
            return -1;
        if (!PyBytes_Check(batch) || PyBytes_GET_SIZE(batch) != (Py_ssize_t)sizeof key_pool) {
            Py_DECREF(batch);
            PyErr_SetString(PyExc_RuntimeError, "os.urandom returned something else than asked");
            return -1;
        }
        memcpy(key_pool, PyBytes_AS_STRING(batch), sizeof key_pool);
        Py_DECREF(batch);
        key_pos = 0;
    }
    memcpy(key, key_pool + key_pos, 4);
    key_pos += 4;
    return 0;
}

/* reset_mask_keys(): forget the keys drawn so far (a forked child's copy of its parent's). */
static PyObject *
reset_mask_keys(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)args;
    if (nargs != 0) {
        PyErr_SetString(PyExc_TypeError, "reset_mask_keys()");
        return NULL;
    }
    memset(key_pool, 0, sizeof key_pool);
    key_pos = sizeof key_pool;
    Py_RETURN_NONE;
}

/* mask_key() -> bytes: a fresh key from the pool the client frames draw from. */
static PyObject *
mask_key(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)args;
    if (nargs != 0) {
        PyErr_SetString(PyExc_TypeError, "mask_key()");
        return NULL;
    }
    uint8_t key[4];
    if (fresh_key(key) < 0)
        return NULL;
    return PyBytes_FromStringAndSize((const char *)key, 4);
}

/* serialize_client_frame(first_byte, payload) -> bytes: serialize_frame with a fresh key. */
static PyObject *
serialize_client_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "serialize_client_frame(first_byte, payload)");
        return NULL;
    }
    uint8_t first, key[4];
    if (first_byte_of(args[0], &first) < 0)
        return NULL;
    Py_buffer payload;
    if (get_bytes(args[1], &payload) < 0)
        return NULL;
    PyObject *out = NULL;
    if (fresh_key(key) == 0)
        out = build_frame(first, (const uint8_t *)payload.buf, payload.len, key);
    PyBuffer_Release(&payload);
    return out;
}

/* serialize_client_text(first_byte, text) -> bytes: serialize_text with a fresh key. */
static PyObject *
serialize_client_text(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "serialize_client_text(first_byte, text)");
        return NULL;
    }
    uint8_t first, key[4];
    if (first_byte_of(args[0], &first) < 0 || check_text(args[1], "serialize_client_text") < 0
        || fresh_key(key) < 0)
        return NULL;
    return text_frame(first, args[1], key);
}

/* max_frame_size as C sees it: None, or any limit past 64 bits, is no limit. */
static int
frame_limit(PyObject *value, uint64_t *limit)
{
    if (value == Py_None) {
        *limit = UINT64_MAX;
        return 0;
    }
    if (!PyLong_Check(value)) {
        /* An __index__ object counts as its int; anything else (float) is a TypeError. */
        PyObject *index = PyNumber_Index(value);
        if (index == NULL)
            return -1;
        int status = frame_limit(index, limit);
        Py_DECREF(index);
        return status;
    }
    int overflow;
    long long small = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (small == -1 && PyErr_Occurred())
        return -1;
    if (overflow < 0 || (overflow == 0 && small < 0)) {
        PyErr_SetString(PyExc_ValueError, "max_frame_size must be None or at least 0");
        return -1;
    }
    if (overflow == 0) {
        *limit = (uint64_t)small;
        return 0;
    }
    *limit = PyLong_AsUnsignedLongLong(value);
    if (*limit == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        *limit = UINT64_MAX;
    }
    return 0;
}

/*
 * scan_frames(data, pos, mask_required, allowed_rsv, max_frame_size)
 *     -> (frames, new_pos, error)
 *
 * Walks the complete frames in data[pos:].  frames is flat, two items per
 * frame: the first header byte and the payload as new, unmasked bytes.
 * data is only read, so any buffer will do and a transport's read buffer
 * can be scanned without first copying it into the connection's.
 * See FrameScanner.scan in _pyspeedups.py for the contract.
 */
static PyObject *
scan_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "scan_frames(data, pos, mask_required, allowed_rsv, max_frame_size)");
        return NULL;
    }
    /* A pos past 64 bits is outside any buffer; that is found below, after
     * the other arguments, as the Python twin finds it. */
    int pos_overflow;
    long long pos = PyLong_AsLongLongAndOverflow(args[1], &pos_overflow);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    int mask_required = PyObject_IsTrue(args[2]);
    if (mask_required < 0)
        return NULL;
    int rsv_overflow;
    long allowed_rsv = PyLong_AsLongAndOverflow(args[3], &rsv_overflow);
    if (allowed_rsv == -1 && PyErr_Occurred())
        return NULL;
    if (rsv_overflow || (allowed_rsv & ~0x70L)) {
        PyErr_Format(PyExc_ValueError, "allowed_rsv takes only the bits 0x40, 0x20 and 0x10, not %R", args[3]);
        return NULL;
    }
    uint64_t limit;
    if (frame_limit(args[4], &limit) < 0)
        return NULL;

    Py_buffer data;
    if (get_bytes(args[0], &data) < 0)
        return NULL;
    PyObject *frames = NULL, *result = NULL;
    if (pos_overflow || pos < 0 || pos > (long long)data.len) {
        PyErr_Format(PyExc_ValueError, "pos %R is outside the buffer (length %zd)", args[1], data.len);
        goto done;
    }
    frames = PyList_New(0);
    if (frames == NULL)
        goto done;

    const uint8_t *buf = (const uint8_t *)data.buf;
    size_t len = (size_t)data.len, at = (size_t)pos;
    int status;
    for (;;) {
        ws_header h;
        status = ws_parse_header(buf + at, len - at, mask_required, (unsigned)allowed_rsv, limit, &h);
        if (status != WS_OK)
            break;
        size_t start = at + h.header_length;
        if (len - start < h.payload_length) {
            status = WS_INCOMPLETE;
            break;
        }
        size_t n = (size_t)h.payload_length;
        PyObject *payload;
        if (h.masked) {
            payload = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
            if (payload != NULL)
                ws_mask_copy((uint8_t *)PyBytes_AS_STRING(payload), buf + start, n, buf + start - 4, 0);
        } else {
            payload = PyBytes_FromStringAndSize((const char *)buf + start, (Py_ssize_t)n);
        }
        if (payload == NULL)
            goto done;
        PyObject *head = PyLong_FromLong(h.head);
        if (head == NULL || PyList_Append(frames, head) < 0 || PyList_Append(frames, payload) < 0) {
            Py_XDECREF(head);
            Py_DECREF(payload);
            goto done;
        }
        Py_DECREF(head);
        Py_DECREF(payload);
        at = start + n;
    }
    result = Py_BuildValue("(Onh)", frames, (Py_ssize_t)at, (short)(status == WS_INCOMPLETE ? 0 : status));

done:
    Py_XDECREF(frames);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, key, offset=0) -> bytes: data XORed with the repeated 4-byte key."},
    {"serialize_frame", (PyCFunction)(void (*)(void))serialize_frame, METH_FASTCALL,
     "serialize_frame(first_byte, payload, mask_key=None) -> bytes: a whole frame."},
    {"serialize_text", (PyCFunction)(void (*)(void))serialize_text, METH_FASTCALL,
     "serialize_text(first_byte, text, mask_key=None) -> bytes: a whole frame of text's UTF-8."},
    {"serialize_client_frame", (PyCFunction)(void (*)(void))serialize_client_frame, METH_FASTCALL,
     "serialize_client_frame(first_byte, payload) -> bytes: a whole frame, masked with a fresh key."},
    {"serialize_client_text", (PyCFunction)(void (*)(void))serialize_client_text, METH_FASTCALL,
     "serialize_client_text(first_byte, text) -> bytes: a whole frame of text's UTF-8, masked with a fresh key."},
    {"mask_key", (PyCFunction)(void (*)(void))mask_key, METH_FASTCALL,
     "mask_key() -> bytes: a fresh masking key, from the pool the client frames draw from."},
    {"reset_mask_keys", (PyCFunction)(void (*)(void))reset_mask_keys, METH_FASTCALL,
     "reset_mask_keys(): forget the keys drawn so far (in a forked child)."},
    {"scan_frames", (PyCFunction)(void (*)(void))scan_frames, METH_FASTCALL,
     "scan_frames(data, pos, mask_required, allowed_rsv, max_frame_size) -> (frames, new_pos, error)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "wsstack._fastcall", NULL, 0, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fastcall(void)
{
    if (urandom == NULL) {
        PyObject *os = PyImport_ImportModule("os");
        if (os == NULL)
            return NULL;
        urandom = PyObject_GetAttrString(os, "urandom");
        Py_DECREF(os);
        if (urandom == NULL)
            return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    /* scan_frames' error codes, for the Python side to check its copy against. */
    if (PyModule_AddIntConstant(m, "ERR_RESERVED_OPCODE", WS_ERR_RESERVED_OPCODE) < 0
        || PyModule_AddIntConstant(m, "ERR_RSV", WS_ERR_RSV) < 0
        || PyModule_AddIntConstant(m, "ERR_MASK_REQUIRED", WS_ERR_MASK_REQUIRED) < 0
        || PyModule_AddIntConstant(m, "ERR_MASK_FORBIDDEN", WS_ERR_MASK_FORBIDDEN) < 0
        || PyModule_AddIntConstant(m, "ERR_CONTROL_TOO_LONG", WS_ERR_CONTROL_TOO_LONG) < 0
        || PyModule_AddIntConstant(m, "ERR_CONTROL_FRAGMENTED", WS_ERR_CONTROL_FRAGMENTED) < 0
        || PyModule_AddIntConstant(m, "ERR_LENGTH_HIGH_BIT", WS_ERR_LENGTH_HIGH_BIT) < 0
        || PyModule_AddIntConstant(m, "ERR_FRAME_TOO_BIG", WS_ERR_FRAME_TOO_BIG) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
