/* The message scan in C: the readers' framing of a plain message in one pass, and the
 * reading of a header field's value.
 *
 * `shared/sip/_readers.py` frames every received message by byte searches, a split and a
 * partition and a dict probe per line, each through a Python call (~38,000 instructions a
 * message, compiled).  This module does the same for the common case in one walk over the
 * head with memchr, and answers None for anything else, which the Python readers then frame
 * as before (and refuse with their precise errors): the two never disagree on a message this
 * one frames (tests/shared/sip/test_scan.py compares them), and the Python readers stay the
 * one definition of what is accepted.
 *
 * A plain message: at most MAX_MESSAGE_SIZE bytes, no leading line break, CRLF after every
 * line and no CR or LF anywhere else in the head, an empty line ending the head, one to
 * MAX_HEADER_FIELDS - 1 header lines of at most MAX_LINE_LENGTH bytes, each `name:` with a
 * name the key memo (`headers.KEY_MEMO`) holds (so no fold: a continuation line starts with
 * a blank, which no memo name does), and at most one Content-Length, of 1 to 9 digits.
 *
 * It also looks a header up in the keys it made (`key_index`, `key_count`, below).
 *
 * Built with the compiled fast path (`deploy/extensions.py`); CALLMESH_NO_EXTENSIONS=1 (or no
 * build) leaves it out and the readers frame every message in Python.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The readers' bounds (shared/sip/_readers.py): a message of more is the readers' to refuse. */
#define MAX_MESSAGE_SIZE 65535
#define MAX_HEADER_FIELDS 256
#define MAX_LINE_LENGTH 8192
#define MAX_LENGTH_DIGITS 9

static PyObject *content_length_key; /* "content-length", interned: the memo's keys are */

/* Python's bytes.strip() whitespace: space, \t, \n, \v, \f, \r. */
static int is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* The Content-Length value of `line` after its colon: its digits as a number, or -1 when it
 * is not 1 to 9 digits between optional whitespace (the readers give the precise error). */
static long declared_length(const char *value, const char *end) {
    while (value < end && is_space(*value)) value++;
    while (end > value && is_space(end[-1])) end--;
    if (end == value || end - value > MAX_LENGTH_DIGITS) return -1;
    long length = 0;
    for (; value < end; value++) {
        if (*value < '0' || *value > '9') return -1;
        length = length * 10 + (*value - '0');
    }
    return length;
}

/* The end of the line starting at `at` (the offset of its CR), or -1 when it has no CRLF or
 * holds a bare CR or LF. */
static Py_ssize_t line_end(const char *data, Py_ssize_t at, Py_ssize_t size) {
    const char *lf = memchr(data + at, '\n', (size_t)(size - at));
    if (lf == NULL) return -1;
    Py_ssize_t end = lf - data - 1;
    if (end < at || data[end] != '\r') return -1;
    if (memchr(data + at, '\r', (size_t)(end - at)) != NULL) return -1;
    return end;
}

/* The names found in the memo so far, by a hash of their bytes: a name met again (nearly
 * every one, a proxy sees a few dozen) costs a hash and a memcmp instead of a bytes object, its
 * SipHash and a dict probe.  The memo (`headers.KEY_MEMO`) only ever learns names, never
 * changes or forgets one, so a name found once keeps its key.  Another memo passed in, or the
 * memo shrunk (a test emptied it), empties them; the last memo is kept referenced. */
#define NAME_SLOTS 128
#define LONGEST_NAME 31
typedef struct {
    Py_ssize_t size;
    char name[LONGEST_NAME];
    int is_length;
    PyObject *key;
} Name;
static Name names[NAME_SLOTS];
static PyObject *names_memo; /* the memo they were found in (a reference: compared by identity) */
static Py_ssize_t names_memo_size; /* its size then: smaller now, it forgot names (a test's) */

static Name *slot_of(const char *name, Py_ssize_t size) {
    uint32_t hash = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < size; i++) hash = (hash ^ (unsigned char)name[i]) * 16777619u;
    return &names[(hash ^ (hash >> 16)) & (NAME_SLOTS - 1)];
}

static void forget_names(PyObject *memo) {
    for (int i = 0; i < NAME_SLOTS; i++) {
        Py_CLEAR(names[i].key);
        names[i].size = 0;
    }
    Py_INCREF(memo);
    Py_XSETREF(names_memo, memo);
    names_memo_size = PyDict_GET_SIZE(memo);
}

/* The key of header name `name` (borrowed), whether it is Content-Length's in `*is_length`;
 * NULL when the memo does not hold the name (or a Python error). */
static PyObject *key_of(PyObject *memo, const char *name, Py_ssize_t size, int *is_length) {
    if (memo != names_memo || PyDict_GET_SIZE(memo) < names_memo_size) forget_names(memo);
    Name *slot = size <= LONGEST_NAME ? slot_of(name, size) : NULL;
    if (slot != NULL && slot->key != NULL && slot->size == size &&
        memcmp(slot->name, name, (size_t)size) == 0) {
        *is_length = slot->is_length;
        return slot->key;
    }
    PyObject *raw = PyBytes_FromStringAndSize(name, size);
    if (raw == NULL) return NULL;
    PyObject *key = PyDict_GetItemWithError(memo, raw);
    Py_DECREF(raw);
    if (key == NULL || !PyUnicode_CheckExact(key)) return NULL; /* only a str is a key */
    *is_length = key == content_length_key ||
                 (PyUnicode_GET_LENGTH(key) == 14 &&
                  PyUnicode_Compare(key, content_length_key) == 0);
    if (slot != NULL && names_memo == memo) { /* (a name's __eq__ may have scanned another) */
        Py_INCREF(key);
        Py_XSETREF(slot->key, key);
        slot->size = size;
        memcpy(slot->name, name, (size_t)size);
        slot->is_length = *is_length;
        names_memo_size = PyDict_GET_SIZE(memo);
    }
    return key;
}

/* One header line: its key from the memo appended to `keys`, its bytes to `lines`.
 * 1 done, 0 not plain, -1 a Python error. `*length` takes a Content-Length's value. */
static int header_line(const char *data, Py_ssize_t at, Py_ssize_t end, PyObject *memo,
                       PyObject *keys, PyObject *lines, long *length) {
    const char *colon = memchr(data + at, ':', (size_t)(end - at));
    if (colon == NULL) return 0;
    int is_length = 0;
    PyObject *key = key_of(memo, data + at, colon - (data + at), &is_length); /* borrowed */
    if (key == NULL) return PyErr_Occurred() ? -1 : 0;
    if (is_length) {
        if (*length >= 0) return 0; /* a second Content-Length */
        *length = declared_length(colon + 1, data + end);
        if (*length < 0) return 0;
    }
    PyObject *line = PyBytes_FromStringAndSize(data + at, end - at);
    if (line == NULL) return -1;
    int failed = PyList_Append(lines, line);
    Py_DECREF(line);
    if (failed || PyList_Append(keys, key)) return -1;
    return 1;
}

/* scan_head(data, memo) -> (start, keys, lines, body_start, content_length) | None */
static PyObject *scan_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "scan_head(data, memo: dict)");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[0])) Py_RETURN_NONE; /* a bytearray: the readers' own case */
    const char *data = PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (size == 0 || size > MAX_MESSAGE_SIZE || data[0] == '\r' || data[0] == '\n')
        Py_RETURN_NONE;
    Py_ssize_t start_end = line_end(data, 0, size), end;
    if (start_end < 0 || start_end > MAX_LINE_LENGTH) Py_RETURN_NONE;
    PyObject *keys = PyList_New(0), *lines = PyList_New(0), *start = NULL;
    if (keys == NULL || lines == NULL) goto error;
    long length = -1;
    Py_ssize_t at = start_end + 2, fields = 0;
    for (;;) {
        end = line_end(data, at, size);
        if (end < 0) goto not_plain;
        if (end == at) break; /* the empty line */
        if (end - at > MAX_LINE_LENGTH || ++fields >= MAX_HEADER_FIELDS) goto not_plain;
        int done = header_line(data, at, end, args[1], keys, lines, &length);
        if (done < 0) goto error;
        if (done == 0) goto not_plain;
        at = end + 2;
    }
    if (fields == 0) goto not_plain; /* a head of one line: the readers' own case */
    start = PyBytes_FromStringAndSize(data, start_end);
    if (start == NULL) goto error;
    return Py_BuildValue("(NNNnl)", start, keys, lines, end + 2, length);
not_plain:
    Py_XDECREF(keys);
    Py_XDECREF(lines);
    Py_RETURN_NONE;
error:
    Py_XDECREF(keys);
    Py_XDECREF(lines);
    return NULL;
}

/* The error `_fields.read_value` raises for a value that is not UTF-8 (imported when needed:
 * the errors module is Python, services subclass its exceptions). */
static PyObject *not_utf8(void) {
    PyObject *errors = PyImport_ImportModule("shared.sip.errors");
    if (errors == NULL) return NULL;
    PyObject *kind = PyObject_GetAttrString(errors, "SipParseError");
    Py_DECREF(errors);
    if (kind == NULL) return NULL;
    PyErr_SetString(kind, "header value is not valid UTF-8");
    Py_DECREF(kind);
    return NULL;
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

/* `value` with each fold (`\r?\n` and the blanks after it) made one space, into `out`
 * (as long as `value` at least); the length written. */
static Py_ssize_t unfold(const char *value, const char *end, char *out) {
    char *written = out;
    while (value < end) {
        const char *lf = value[0] == '\r' && end - value > 1 && value[1] == '\n' ? value + 1
                         : value[0] == '\n'                                   ? value
                                                                              : NULL;
        if (lf != NULL && lf + 1 < end && is_blank(lf[1])) {
            for (value = lf + 1; value < end && is_blank(*value);) value++;
            *written++ = ' ';
        } else {
            *written++ = *value++;
        }
    }
    return written - out;
}

static int is_stripped(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* field_value(line) -> str: the value of a raw header field line, exactly as
 * `_fields.read_value` reads it: after the first colon, each fold one space, blanks and line
 * ends stripped, UTF-8 (else SipParseError).  The blanks and folds are ASCII and no byte of a
 * multi-byte UTF-8 sequence is, so unfolding and stripping the bytes before decoding gives
 * the text Python gets by decoding first. */
static PyObject *field_value(PyObject *module, PyObject *line) {
    (void)module;
    if (!PyBytes_Check(line)) {
        PyErr_SetString(PyExc_TypeError, "field_value(line: bytes)");
        return NULL;
    }
    const char *data = PyBytes_AS_STRING(line);
    Py_ssize_t size = PyBytes_GET_SIZE(line);
    const char *colon = memchr(data, ':', (size_t)size);
    const char *value = colon == NULL ? data + size : colon + 1, *end = data + size;
    char *unfolded = NULL;
    if (memchr(value, '\n', (size_t)(end - value)) != NULL) {
        unfolded = PyMem_Malloc((size_t)(end - value) + 1);
        if (unfolded == NULL) return PyErr_NoMemory();
        end = unfolded + unfold(value, end, unfolded);
        value = unfolded;
    }
    while (value < end && is_stripped(*value)) value++;
    while (end > value && is_stripped(end[-1])) end--;
    PyObject *text = PyUnicode_DecodeUTF8(value, end - value, NULL);
    PyMem_Free(unfolded);
    if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        return not_utf8();
    }
    return text;
}

/* Looking a header up by key, as list.index and list.count answer.  Why: the model finds its
 * headers in its list of keys (`_keys.key_index`) about 180 times per call, and list.index
 * compares every key before the one it finds through PyObject_RichCompare, about ninety
 * instructions each.  A key the scan or `headers.header_key` gave is the memo's interned
 * string, so the one found is the same object, and any other exact str with a cached hash
 * that differs cannot be equal: two loads.  Anything else (no hash cached yet, a subclass)
 * is compared as list.index compares it. */
static int same_key(PyObject *item, PyObject *key, Py_hash_t hash) {
    if (item == key) return 1;
    if (hash != -1 && PyUnicode_CheckExact(item)) {
        Py_hash_t other = ((PyASCIIObject *)item)->hash;
        if (other != -1 && other != hash) return 0;
    }
    Py_INCREF(item); /* a subclass's __eq__ may change the list */
    int same = PyObject_RichCompareBool(item, key, Py_EQ);
    Py_DECREF(item);
    return same;
}

/* The key's cached hash when the shortcut may use it (an exact str), else -1. */
static Py_hash_t hash_of(PyObject *key) {
    return PyUnicode_CheckExact(key) ? PyObject_Hash(key) : -1;
}

static int key_arguments(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t most,
                         const char *usage) {
    if (nargs < 2 || nargs > most || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    return 0;
}

/* key_index(keys, key, start=0) -> where `key` is first from `start` on (negative: from the
 * end); ValueError when it is not there */
static PyObject *key_index(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    const char *usage = "key_index(keys: list, key, start: int = 0)";
    if (key_arguments(args, nargs, 3, usage) < 0) return NULL;
    Py_ssize_t at = 0;
    if (nargs == 3) {
        at = PyNumber_AsSsize_t(args[2], NULL); /* clipped when huge, as list.index */
        if (at == -1 && PyErr_Occurred()) return NULL;
    }
    PyObject *keys = args[0], *key = args[1];
    if (at < 0) { /* from the end, as list.index counts it */
        at += PyList_GET_SIZE(keys);
        if (at < 0) at = 0;
    }
    Py_hash_t hash = hash_of(key);
    if (hash == -1 && PyErr_Occurred()) return NULL;
    for (; at < PyList_GET_SIZE(keys); at++) {
        int same = same_key(PyList_GET_ITEM(keys, at), key, hash);
        if (same < 0) return NULL;
        if (same) return PyLong_FromSsize_t(at);
    }
    PyErr_SetNone(PyExc_ValueError); /* list.index's error, without its message to format */
    return NULL;
}

/* key_count(keys, key) -> how many times `key` is in `keys` */
static PyObject *key_count(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (key_arguments(args, nargs, 2, "key_count(keys: list, key)") < 0) return NULL;
    PyObject *keys = args[0], *key = args[1];
    Py_hash_t hash = hash_of(key);
    if (hash == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t count = 0;
    for (Py_ssize_t at = 0; at < PyList_GET_SIZE(keys); at++) {
        int same = same_key(PyList_GET_ITEM(keys, at), key, hash);
        if (same < 0) return NULL;
        count += same;
    }
    return PyLong_FromSsize_t(count);
}

static PyMethodDef methods[] = {
    {"scan_head", (PyCFunction)(void (*)(void))scan_head, METH_FASTCALL,
     "Frame a plain message's head: (start, keys, lines, body_start, content_length) "
     "(-1: none), or None for the Python readers."},
    {"field_value", field_value, METH_O,
     "A raw header field line's value (folds unfolded, stripped, UTF-8), as _fields.read_value."},
    {"key_index", (PyCFunction)(void (*)(void))key_index, METH_FASTCALL,
     "Where a key is first in a list of keys from a start on, as list.index."},
    {"key_count", (PyCFunction)(void (*)(void))key_count, METH_FASTCALL,
     "How many times a key is in a list of keys, as list.count."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "shared.sip._scan", "The message scan in C (see _scan.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__scan(void) {
    if (content_length_key == NULL) { /* once: a second load (the tests' loader) keeps it */
        content_length_key = PyUnicode_InternFromString("content-length");
        if (content_length_key == NULL) return NULL;
    }
    return PyModule_Create(&module_def);
}
