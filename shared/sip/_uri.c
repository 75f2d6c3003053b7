/* The SIP URI, Via and address readers in C: the parts of a plain `sip:`/`sips:` URI, of a
 * plain via-parm or of a plain name-addr, in one pass (a Via's sent-by and parameters are a
 * URI's host, port and parameters; an address is a display name, a URI and parameters).
 *
 * `shared/sip/uri.py` reads a URI by a printability check, a scheme match, partitions at
 * `@`, `?`, `;` and `:`, a character-set test of the host, a port check and a split and a
 * partition per parameter, each through a Python call (~8,500 instructions a URI, compiled;
 * a proxied call reads about eleven); `shared/sip/via.py` reads a Via much the same way
 * (~11,000, five a call).  This module does the same for the common case in one walk, and
 * answers None for anything else, which `parse_uri` and `parse_via` then read in Python as
 * before (and refuse with their precise errors): the two never disagree on a value this one
 * reads (tests/shared/sip/test_uri_in_c.py compares them), and `uri.py` and `via.py` stay the
 * one definition of what is accepted.
 *
 * A plain URI: an exact str of printable ASCII without a space, `%` (an escape) or `?` (URI
 * headers); scheme `sip` or `sips` in any case; a user part (with or without a password)
 * that is not empty when there is an `@`; a host of letters, digits, `-`, `.` and `_` (no
 * IPv6 reference); a port of 1 to 5 digits up to 65535; parameters with a name each.
 *
 * A plain address (`sip_address`): printable ASCII; a `"quoted"` display name without a
 * backslash, or one of tokens and blanks, then `<` a plain URI `>`; or an addr-spec without a
 * blank or a comma; then header parameters without a blank or a quote, each with a name and
 * no empty value (`address.parse_address`, `_read_address`).
 *
 * A Via's branch and a From or To value's tag (`via_branch`, `address_tag`): the one
 * parameter among plain ones (`params.param_of`'s fast path), read without the rest of the
 * value (~400 and ~330 ns a read compiled, nine reads a proxied call; tens in C).
 *
 * A plain via-parm: `SIP/2.0/` then a transport of letters and digits, one space, and a
 * sent-by (a host and port as in a plain URI), then parameters each with a name and, after an
 * `=`, a value that is not empty; printable ASCII with no other space, no comma and no quote.
 *
 * Built with the compiled fast path (`deploy/extensions.py`); CALLMESH_NO_EXTENSIONS=1 (or no
 * build) leaves it out and `parse_uri`, `parse_via` and `parse_address` read every value in
 * Python.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_PORT_DIGITS 5

static PyObject *sip_scheme, *sips_scheme, *no_headers; /* "sip", "sips", () */

static int is_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

static PyObject *text_of(const char *start, const char *end) {
    return PyUnicode_FromStringAndSize(start, end - start); /* ASCII: no decoding work */
}

/* `start`..`end` with each letter from `first` to `last` moved by `shift` (ASCII): `str.lower()`
 * is ('A', 'Z', 32), `str.upper()` ('a', 'z', -32) for ASCII text. */
static PyObject *recased(const char *start, const char *end, char first, char last, int shift) {
    PyObject *text = PyUnicode_New(end - start, 127);
    if (text == NULL) return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    for (const char *c = start; c < end; c++) {
        *out++ = (Py_UCS1)(*c >= first && *c <= last ? *c + shift : *c);
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

/* The parameters of `start`..`end` (what follows the first `;`), as `_uri_params` (and, with
 * `empty_value_refused`, `params._parse_plain`) reads them: ((name lower-cased, value or
 * None), ...); Py_None when one has no name or a refused empty value (the Python reader's
 * error), NULL on a Python error. */
static PyObject *params_of(const char *start, const char *end, int empty_value_refused) {
    Py_ssize_t count = 1;
    for (const char *c = start; c < end; c++) count += *c == ';';
    PyObject *params = PyTuple_New(count);
    if (params == NULL) return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        const char *piece_end = memchr(start, ';', (size_t)(end - start));
        if (piece_end == NULL) piece_end = end;
        const char *eq = memchr(start, '=', (size_t)(piece_end - start));
        const char *name_end = eq == NULL ? piece_end : eq;
        if (name_end == start || (empty_value_refused && eq != NULL && eq + 1 == piece_end)) {
            Py_DECREF(params);
            Py_RETURN_NONE;
        }
        PyObject *name = recased(start, name_end, 'A', 'Z', 'a' - 'A');
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

#define NO_PORT (-1)
#define NOT_PLAIN (-2)

/* The port of the host and port `start`..`end` as `uri.split_host_port` splits it (NO_PORT:
 * none), the host ending at `*host_end`; NOT_PLAIN for an empty host, a character a host
 * name does not have (an IPv6 reference too: Python reads it) or a bad port. */
static long host_port(const char *start, const char *end, const char **host_end) {
    const char *colon = memchr(start, ':', (size_t)(end - start));
    *host_end = colon == NULL ? end : colon;
    if (*host_end == start) return NOT_PLAIN;
    for (const char *c = start; c < *host_end; c++) {
        if (!is_host_char(*c)) return NOT_PLAIN;
    }
    if (colon == NULL) return NO_PORT;
    long port = port_of(colon + 1, end);
    return port < 0 ? NOT_PLAIN : port;
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

/* The characters of `arg` when it is an exact str of ASCII; NULL when it is not (a reader
 * leaves it to Python), with a TypeError set when it is no str at all (`call` says what is). */
static const char *ascii_of(PyObject *arg, const char *call, Py_ssize_t *size) {
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, call);
        return NULL;
    }
    /* PyUnicode_READY: a str built by the deprecated C API is not ready to be read on 3.11
     * (-1 and a MemoryError when it cannot be made so; a no-op from 3.12). */
    if (!PyUnicode_CheckExact(arg) || PyUnicode_READY(arg) < 0 || !PyUnicode_IS_ASCII(arg)) {
        return NULL;
    }
    *size = PyUnicode_GET_LENGTH(arg);
    return (const char *)PyUnicode_1BYTE_DATA(arg);
}

/* The arguments of `SipUri` for the plain URI `text` (`size` ASCII characters), Py_None for
 * any other, NULL on a Python error. */
static PyObject *uri_parts(const char *text, Py_ssize_t size) {
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
    const char *host_last;
    long port = host_port(rest, host_end, &host_last);
    if (port == NOT_PLAIN) Py_RETURN_NONE;
    PyObject *params = semicolon == NULL ? PyTuple_New(0) : params_of(semicolon + 1, end, 0);
    if (params == NULL || params == Py_None) return params;
    PyObject *host = text_of(rest, host_last);
    PyObject *user_text = user == NULL ? Py_NewRef(Py_None) : text_of(user, user_end);
    PyObject *password_text =
        password == NULL ? Py_NewRef(Py_None) : text_of(password, password_end);
    PyObject *port_number = port == NO_PORT ? Py_NewRef(Py_None) : PyLong_FromLong(port);
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

/* sip_uri(text) -> (host, user, password, port, params, headers, scheme) | None: the
 * arguments of `SipUri` for a plain URI, exactly as `uri._read_uri` reads it; None for any
 * other text (the Python reader's, to read or to refuse). */
static PyObject *sip_uri(PyObject *module, PyObject *arg) {
    (void)module;
    Py_ssize_t size;
    const char *text = ascii_of(arg, "sip_uri(text: str)", &size);
    if (text == NULL) return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    return uri_parts(text, size);
}

/* A display name's characters outside a quoted string (`address._TOKENS`), the blank aside. */
static int is_token_char(char c) {
    return is_alnum(c) || (c != 0 && strchr("-.!%*_+`'~", c) != NULL);
}

/* The header parameters `start`..`end` of an address (empty, or from a `;` on) as
 * `params.parse_params(text, "address")` reads them without a blank or a quote; Py_None
 * for any other text (or one it refuses), NULL on a Python error. */
static PyObject *address_params(const char *start, const char *end) {
    if (start == end) return PyTuple_New(0);
    if (*start != ';' || memchr(start, ' ', (size_t)(end - start)) != NULL ||
        memchr(start, '"', (size_t)(end - start)) != NULL)
        Py_RETURN_NONE;
    return params_of(start + 1, end, 1);
}

static PyObject *address_of(PyObject *display, const char *uri, const char *uri_end,
                            const char *params_start, const char *end) {
    PyObject *parts = uri_parts(uri, uri_end - uri);
    if (parts == NULL || parts == Py_None) return parts;
    PyObject *params = address_params(params_start, end);
    PyObject *address = NULL;
    if (params == Py_None) address = Py_NewRef(Py_None);
    else if (params != NULL) address = PyTuple_Pack(3, display, parts, params);
    Py_XDECREF(params);
    Py_DECREF(parts);
    return address;
}

/* sip_address(text) -> (display name | None, SipUri's arguments, params) | None: a plain
 * name-addr or addr-spec with its header parameters, exactly as `address._read_address`
 * reads it; None for any other text (the Python reader's, to read or to refuse). */
static PyObject *sip_address(PyObject *module, PyObject *arg) {
    (void)module;
    Py_ssize_t size;
    const char *text = ascii_of(arg, "sip_address(text: str)", &size);
    if (text == NULL) return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    for (Py_ssize_t i = 0; i < size; i++) {
        if (text[i] < ' ' || text[i] > '~') Py_RETURN_NONE; /* a tab, a line break: Python's */
    }
    const char *start = text, *end = text + size;
    while (start < end && *start == ' ') start++;
    while (end > start && end[-1] == ' ') end--;
    if (start == end) Py_RETURN_NONE;
    const char *display = NULL, *display_end = NULL, *lt;
    if (*start == '"') {
        const char *close = memchr(start + 1, '"', (size_t)(end - start - 1));
        if (close == NULL || memchr(start + 1, '\\', (size_t)(close - start - 1)) != NULL)
            Py_RETURN_NONE; /* unterminated, or an escape: Python's */
        display = start + 1;
        display_end = close;
        lt = close + 1;
        while (lt < end && *lt == ' ') lt++;
        if (lt == end || *lt != '<') Py_RETURN_NONE;
    } else {
        lt = memchr(start, '<', (size_t)(end - start));
        if (lt != NULL && lt > start) {
            display = start;
            display_end = lt;
            while (display_end > display && display_end[-1] == ' ') display_end--;
            for (const char *c = display; c < display_end; c++) {
                if (*c != ' ' && !is_token_char(*c)) Py_RETURN_NONE;
            }
        }
    }
    if (lt == NULL) { /* an addr-spec: its header parameters from the first `;` */
        const char *semicolon = memchr(start, ';', (size_t)(end - start));
        const char *uri_end = semicolon == NULL ? end : semicolon;
        for (const char *c = start; c < uri_end; c++) {
            if (*c == ' ' || *c == ',') Py_RETURN_NONE; /* `?` the URI reader leaves */
        }
        return address_of(Py_None, start, uri_end, uri_end, end);
    }
    const char *gt = memchr(lt + 1, '>', (size_t)(end - lt - 1));
    if (gt == NULL) Py_RETURN_NONE;
    PyObject *name = display == NULL ? Py_NewRef(Py_None) : text_of(display, display_end);
    if (name == NULL) return NULL;
    PyObject *address = address_of(name, lt + 1, gt, gt + 1, end);
    Py_DECREF(name);
    return address;
}

/* sip_via(text) -> (transport, host, port, params) | None: the arguments of `Via` (its
 * protocol SIP/2.0) for a plain via-parm, exactly as `via._read_via` reads it; None for any
 * other text (the Python reader's, to read or to refuse). */
static PyObject *sip_via(PyObject *module, PyObject *arg) {
    (void)module;
    Py_ssize_t size;
    const char *text = ascii_of(arg, "sip_via(text: str)", &size);
    if (text == NULL) return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    const char *end = text + size, *space = NULL;
    if (size < 8 || memcmp(text, "SIP/2.0/", 8) != 0) Py_RETURN_NONE;
    for (const char *c = text; c < end; c++) {
        if (*c == ' ' && space == NULL) {
            space = c;
            continue;
        }
        if (*c <= ' ' || *c > '~' || *c == ',' || *c == '"') Py_RETURN_NONE;
    }
    const char *transport = text + 8;
    if (space == NULL || space == transport) Py_RETURN_NONE;
    for (const char *c = transport; c < space; c++) {
        if (!is_alnum(*c)) Py_RETURN_NONE;
    }
    const char *sent_by = space + 1;
    const char *semicolon = memchr(sent_by, ';', (size_t)(end - sent_by));
    const char *sent_by_end = semicolon == NULL ? end : semicolon, *host_end;
    long port = host_port(sent_by, sent_by_end, &host_end);
    if (port == NOT_PLAIN) Py_RETURN_NONE;
    PyObject *params = semicolon == NULL ? PyTuple_New(0) : params_of(semicolon + 1, end, 1);
    if (params == NULL || params == Py_None) return params;
    PyObject *transport_text = recased(transport, space, 'a', 'z', 'A' - 'a');
    PyObject *host = text_of(sent_by, host_end);
    PyObject *port_number = port == NO_PORT ? Py_NewRef(Py_None) : PyLong_FromLong(port);
    PyObject *parts = NULL;
    if (transport_text != NULL && host != NULL && port_number != NULL) {
        parts = PyTuple_Pack(4, transport_text, host, port_number, params);
    }
    Py_XDECREF(transport_text);
    Py_XDECREF(host);
    Py_XDECREF(port_number);
    Py_DECREF(params);
    return parts;
}

/* The value of parameter `name` (`size` lower-case ASCII letters) among the parameters
 * `start`..`end` as `params.param_of` reads plain ones (from a `;`, no blank, tab or quote): a
 * str ("" for one without a value); Py_False when none is so named (or there are none); Py_None
 * for other text, or text `param_of` refuses (a parameter without a name, an empty value). */
static PyObject *param_in(const char *start, const char *end, const char *name, size_t size) {
    if (start == end) return Py_NewRef(Py_False);
    if (*start != ';') Py_RETURN_NONE;
    for (const char *c = start; c < end; c++) {
        if (*c == ' ' || *c == '\t' || *c == '"') Py_RETURN_NONE;
    }
    const char *found = NULL, *found_end = NULL;
    do {
        start++;
        const char *piece_end = memchr(start, ';', (size_t)(end - start));
        if (piece_end == NULL) piece_end = end;
        const char *eq = memchr(start, '=', (size_t)(piece_end - start));
        const char *name_end = eq == NULL ? piece_end : eq;
        if (name_end == start || (eq != NULL && eq + 1 == piece_end)) Py_RETURN_NONE;
        if (found == NULL && (size_t)(name_end - start) == size) {
            size_t i = 0;
            while (i < size && (start[i] >= 'A' && start[i] <= 'Z' ? start[i] + 32 : start[i]) ==
                                   name[i])
                i++;
            if (i == size) {
                found = eq == NULL ? piece_end : eq + 1;
                found_end = piece_end;
            }
        }
        start = piece_end;
    } while (start < end);
    return found == NULL ? Py_NewRef(Py_False) : text_of(found, found_end);
}

/* via_branch(text) -> str | False | None: the `branch` parameter of a via-parm, as
 * `via._branch_param` reads it (False: none); None for text it must read. */
static PyObject *via_branch(PyObject *module, PyObject *arg) {
    (void)module;
    Py_ssize_t size;
    const char *text = ascii_of(arg, "via_branch(text: str)", &size);
    if (text == NULL) return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    const char *semicolon = memchr(text, ';', (size_t)size);
    if (semicolon == NULL) return Py_NewRef(Py_False);
    return param_in(semicolon, text + size, "branch", 6);
}

/* address_tag(text) -> str | False | None: the `tag` header parameter of a From or To value,
 * as `address._tag_param` reads it (False: none); None for text it must read (a blank at either
 * end, a quote, a `<` without a `>`). */
static PyObject *address_tag(PyObject *module, PyObject *arg) {
    (void)module;
    Py_ssize_t size;
    const char *text = ascii_of(arg, "address_tag(text: str)", &size);
    if (text == NULL) return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    if (size == 0 || text[0] <= ' ' || text[size - 1] <= ' ' || memchr(text, '"', (size_t)size))
        Py_RETURN_NONE;
    const char *end = text + size, *start = memchr(text, '<', (size_t)size);
    if (start != NULL) {
        start = memchr(start, '>', (size_t)(end - start));
        if (start == NULL) Py_RETURN_NONE;
        start++;
    } else {
        start = memchr(text, ';', (size_t)size);
        if (start == NULL) return Py_NewRef(Py_False);
    }
    return param_in(start, end, "tag", 3);
}

static PyMethodDef methods[] = {
    {"sip_uri", sip_uri, METH_O,
     "A plain SIP URI's SipUri arguments (host, user, password, port, params, headers, "
     "scheme), or None for uri.parse_uri to read."},
    {"sip_via", sip_via, METH_O,
     "A plain via-parm's Via arguments (transport, host, port, params), or None for "
     "via.parse_via to read."},
    {"sip_address", sip_address, METH_O,
     "A plain name-addr's or addr-spec's (display name, SipUri arguments, params), or None "
     "for address.parse_address to read."},
    {"via_branch", via_branch, METH_O,
     "A via-parm's branch parameter, False for none, or None for via.branch_of to read."},
    {"address_tag", address_tag, METH_O,
     "A From or To value's tag, False for none, or None for address.tag_of to read."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "shared.sip._uri", "The SIP URI and Via readers in C (see _uri.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__uri(void) {
    if (no_headers == NULL) { /* once: a second load (the tests' loader) keeps the first ones */
        sip_scheme = PyUnicode_InternFromString("sip");
        sips_scheme = PyUnicode_InternFromString("sips");
        no_headers = sip_scheme == NULL || sips_scheme == NULL ? NULL : PyTuple_New(0);
        if (no_headers == NULL) {
            Py_CLEAR(sip_scheme);
            Py_CLEAR(sips_scheme);
            return NULL;
        }
    }
    return PyModule_Create(&module_def);
}
