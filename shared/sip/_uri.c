/* The SIP URI reader in C: the parts of a plain `sip:`/`sips:` URI in one pass.
 *
 * `shared/sip/uri.py` reads a URI by a printability check, a scheme match, partitions at
 * `@`, `?`, `;` and `:`, a character-set test of the host, a port check and a split and a
 * partition per parameter, each through a Python call (~8,500 instructions a URI, compiled;
 * a proxied call reads about eleven).  This module does the same for the common case in one
 * walk, and answers None for anything else, which `parse_uri` then reads in Python as before
 * (and refuses with its precise errors): the two never disagree on a URI this one reads
 * (tests/shared/sip/test_uri_in_c.py compares them), and `uri.py` stays the one definition
 * of what is accepted.
 *
 * A plain URI: an exact str of printable ASCII without a space, `%` (an escape) or `?` (URI
 * headers); scheme `sip` or `sips` in any case; a user part (with or without a password)
 * that is not empty when there is an `@`; a host of letters, digits, `-`, `.` and `_` (no
 * IPv6 reference); a port of 1 to 5 digits up to 65535; parameters with a name each.
 *
 * Built with the compiled fast path (`deploy/extensions.py`); CALLMESH_NO_EXTENSIONS=1 (or no
 * build) leaves it out and `parse_uri` reads every URI in Python.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_PORT_DIGITS 5

static PyObject *sip_scheme, *sips_scheme, *no_headers; /* "sip", "sips", () */

static int is_host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

static PyObject *text_of(const char *start, const char *end) {
    return PyUnicode_FromStringAndSize(start, end - start); /* ASCII: no decoding work */
}

/* `name` lower-cased (ASCII), as `str.lower()` gives it for ASCII text. */
static PyObject *lower_text_of(const char *start, const char *end) {
    PyObject *text = PyUnicode_New(end - start, 127);
    if (text == NULL) return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    for (const char *c = start; c < end; c++) {
        *out++ = (Py_UCS1)(*c >= 'A' && *c <= 'Z' ? *c + ('a' - 'A') : *c);
    }
    return text;
}

/* The port of `start`..`end` (1 to 5 digits, at most 65535), or -1. */
static long port_of(const char *start, const char *end) {
    if (end == start || end - start > MAX_PORT_DIGITS) return -1;
    long port = 0;
    for (; start < end; start++) {
        if (*start < '0' || *start > '9') return -1;
        port = port * 10 + (*start - '0');
    }
    return port > 65535 ? -1 : port;
}

/* The parameters of `start`..`end` (what follows the first `;`), as `_uri_params` reads
 * them: ((name lower-cased, value or None), ...); Py_None when one has no name (the Python
 * reader's error), NULL on a Python error. */
static PyObject *params_of(const char *start, const char *end) {
    Py_ssize_t count = 1;
    for (const char *c = start; c < end; c++) count += *c == ';';
    PyObject *params = PyTuple_New(count);
    if (params == NULL) return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        const char *piece_end = memchr(start, ';', (size_t)(end - start));
        if (piece_end == NULL) piece_end = end;
        const char *eq = memchr(start, '=', (size_t)(piece_end - start));
        const char *name_end = eq == NULL ? piece_end : eq;
        if (name_end == start) {
            Py_DECREF(params);
            Py_RETURN_NONE;
        }
        PyObject *name = lower_text_of(start, name_end);
        PyObject *value = name == NULL ? NULL : eq == NULL ? Py_NewRef(Py_None)
                                                            : text_of(eq + 1, piece_end);
        PyObject *pair = value == NULL ? NULL : PyTuple_Pack(2, name, value);
        Py_XDECREF(name);
        Py_XDECREF(value);
        if (pair == NULL) {
            Py_DECREF(params);
            return NULL;
        }
        PyTuple_SET_ITEM(params, i, pair);
        start = piece_end + 1;
    }
    return params;
}

/* The scheme's length and object when `text` starts `sip:` or `sips:` (any case), else 0. */
static Py_ssize_t scheme_of(const char *text, Py_ssize_t size, PyObject **scheme) {
    if (size < 4 || (text[0] | 0x20) != 's' || (text[1] | 0x20) != 'i' || (text[2] | 0x20) != 'p')
        return 0;
    if (text[3] == ':') {
        *scheme = sip_scheme;
        return 4;
    }
    if (size >= 5 && (text[3] | 0x20) == 's' && text[4] == ':') {
        *scheme = sips_scheme;
        return 5;
    }
    return 0;
}

/* sip_uri(text) -> (host, user, password, port, params, headers, scheme) | None: the
 * arguments of `SipUri` for a plain URI, exactly as `uri.parse_uri` reads it; None for any
 * other text (the Python reader's, to read or to refuse). */
static PyObject *sip_uri(PyObject *module, PyObject *arg) {
    (void)module;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "sip_uri(text: str)");
        return NULL;
    }
    if (!PyUnicode_CheckExact(arg) || !PyUnicode_IS_ASCII(arg)) Py_RETURN_NONE;
    const char *text = (const char *)PyUnicode_1BYTE_DATA(arg);
    Py_ssize_t size = PyUnicode_GET_LENGTH(arg);
    for (Py_ssize_t i = 0; i < size; i++) {
        char c = text[i];
        if (c <= ' ' || c > '~' || c == '%' || c == '?') Py_RETURN_NONE;
    }
    PyObject *scheme = NULL;
    Py_ssize_t skip = scheme_of(text, size, &scheme);
    if (skip == 0) Py_RETURN_NONE;
    const char *rest = text + skip, *end = text + size;
    const char *user = NULL, *user_end = NULL, *password = NULL, *password_end = NULL;
    const char *at = memchr(rest, '@', (size_t)(end - rest));
    if (at != NULL) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        user = rest;
        user_end = colon == NULL ? at : colon;
        if (user_end == user) Py_RETURN_NONE; /* an empty user: the Python reader's error */
        if (colon != NULL) {
            password = colon + 1;
            password_end = at;
        }
        rest = at + 1;
    }
    const char *semicolon = memchr(rest, ';', (size_t)(end - rest));
    const char *host_end = semicolon == NULL ? end : semicolon;
    const char *port_colon = memchr(rest, ':', (size_t)(host_end - rest));
    const char *host_last = port_colon == NULL ? host_end : port_colon;
    if (host_last == rest) Py_RETURN_NONE;
    for (const char *c = rest; c < host_last; c++) {
        if (!is_host_char(*c)) Py_RETURN_NONE; /* an IPv6 reference too: Python reads it */
    }
    long port = port_colon == NULL ? 0 : port_of(port_colon + 1, host_end);
    if (port < 0) Py_RETURN_NONE;
    PyObject *params = semicolon == NULL ? PyTuple_New(0) : params_of(semicolon + 1, end);
    if (params == NULL || params == Py_None) return params;
    PyObject *host = text_of(rest, host_last);
    PyObject *user_text = user == NULL ? Py_NewRef(Py_None) : text_of(user, user_end);
    PyObject *password_text =
        password == NULL ? Py_NewRef(Py_None) : text_of(password, password_end);
    PyObject *port_number = port_colon == NULL ? Py_NewRef(Py_None) : PyLong_FromLong(port);
    PyObject *parts = NULL;
    if (host != NULL && user_text != NULL && password_text != NULL && port_number != NULL) {
        parts = PyTuple_Pack(
            7, host, user_text, password_text, port_number, params, no_headers, scheme
        );
    }
    Py_XDECREF(host);
    Py_XDECREF(user_text);
    Py_XDECREF(password_text);
    Py_XDECREF(port_number);
    Py_DECREF(params);
    return parts;
}

static PyMethodDef methods[] = {
    {"sip_uri", sip_uri, METH_O,
     "A plain SIP URI's SipUri arguments (host, user, password, port, params, headers, "
     "scheme), or None for uri.parse_uri to read."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "shared.sip._uri", "The SIP URI reader in C (see _uri.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__uri(void) {
    sip_scheme = PyUnicode_InternFromString("sip");
    sips_scheme = PyUnicode_InternFromString("sips");
    no_headers = PyTuple_New(0);
    if (sip_scheme == NULL || sips_scheme == NULL || no_headers == NULL) return NULL;
    return PyModule_Create(&module_def);
}
