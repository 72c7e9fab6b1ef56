/*
 * wsstack._cmask: apply_mask as a CPython METH_FASTCALL function.
 *
 * Everything else in csrc/ is reached through cffi, which costs about
 * 0.3 us per call once the wrapper's checks and the output object are
 * counted.  Masking a client frame's payload is one call per frame, and at
 * 1 KiB that overhead was ten times the masking itself; a function that
 * parses its own arguments and fills its own bytes object brings the call
 * down to the cost of the work.  The masking loop is mask.c's, shared with
 * the cffi module.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "wsstack.h"

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "apply_mask(data, key, offset=0)");
        return NULL;
    }
    size_t offset = 0;
    if (nargs == 3) {
        /* Only offset % 4 matters; a Python int of any size or sign reduces mod 4. */
        PyObject *four = PyLong_FromLong(4);
        if (four == NULL)
            return NULL;
        PyObject *rem = PyNumber_Remainder(args[2], four);
        Py_DECREF(four);
        if (rem == NULL)
            return NULL;
        offset = (size_t)PyLong_AsLong(rem);
        Py_DECREF(rem);
        if (PyErr_Occurred())
            return NULL;
    }
    Py_buffer key;
    if (PyObject_GetBuffer(args[1], &key, PyBUF_SIMPLE) < 0)
        return NULL;
    if (key.len != 4) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "a mask key is 4 bytes");
        return NULL;
    }
    Py_buffer data;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
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

static PyMethodDef methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, key, offset=0) -> bytes: data XORed with the repeated 4-byte key."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "wsstack._cmask", NULL, 0, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__cmask(void)
{
    return PyModule_Create(&module);
}
