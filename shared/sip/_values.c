/* The small header values in C: a Call-ID checked, a CSeq read, for the common case.
 *
 * Every message's Call-ID and CSeq are read once (seven messages a call through the proxy;
 * `shared/sip/values.py`).  In Python a Call-ID's check is a regex match and its match
 * object (~1,500 instructions compiled), and a CSeq's reading a split, a digit check, an int
 * and a set lookup of a new string (~2,000).  Here each is one walk over the text.
 *
 * `values.py` stays the one definition of what is accepted: `is_call_id` answers as
 * `values._CALL_ID` fullmatches, and `cseq_parts` reads only the plain case (ASCII, 1 to 9
 * digits, a token), answering None for any other text, which `values.parse_cseq` then reads
 * (and refuses with its precise errors) as before.  `tests/shared/sip/test_values_in_c.py`
 * holds the two to one answer.
 *
 * Built with the compiled fast path (`deploy/extensions.py`); CALLMESH_NO_EXTENSIONS=1 (or no
 * build) leaves it out and `values.py` reads every value in Python.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* The characters of a Call-ID's words (RFC 3261 §25.1 `word`), and of a token (a method). */
static const char call_id_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                    "-.!%*_+`'~()<>:\\\"/[]?{}";
static const char token_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                  "-.!%*_+`'~";
static unsigned char is_call_id_char[256], is_token_char[256];

/* The methods of the RFCs (`values._METHODS`), interned: a CSeq naming one gives the same
 * string each time, no new one, and the proxy's comparisons with its literals are identity. */
static const char *const method_names[] = {
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK",
    "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
};
#define METHODS ((int)(sizeof method_names / sizeof method_names[0]))
static PyObject *methods_interned[METHODS];
static int ready; /* the tables above filled: once, a second load (the tests' loader) keeps them */

/* is_call_id(text) -> bool: whether `text` is a Call-ID, exactly as `values._CALL_ID` fullmatches
 * it: a word, or a word, `@` and a word, of ASCII word characters. */
static PyObject *is_call_id(PyObject *module, PyObject *text) {
    (void)module;
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "is_call_id(text: str)");
        return NULL;
    }
    if (PyUnicode_READY(text) < 0) return NULL; /* a legacy string of the C API, made ready */
    if (!PyUnicode_IS_ASCII(text)) Py_RETURN_FALSE; /* a word character is ASCII */
    const unsigned char *at = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text), word = 0;
    int parts = 1;
    for (Py_ssize_t i = 0; i < size; i++) {
        if (at[i] == '@') {
            if (word == 0 || parts == 2) Py_RETURN_FALSE;
            parts = 2;
            word = 0;
        } else if (is_call_id_char[at[i]]) {
            word++;
        } else {
            Py_RETURN_FALSE;
        }
    }
    if (word == 0) Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

/* What `str.split()` splits ASCII text at: \t \n \v \f \r, \x1c to \x1f, and space. */
static int is_split_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* The method `at[0:size]` as a str: the interned one when it is one of the RFCs'. */
static PyObject *method_of(PyObject *text, const unsigned char *at, Py_ssize_t start,
                           Py_ssize_t size) {
    for (int n = 0; n < METHODS; n++) {
        const char *name = method_names[n];
        if ((Py_ssize_t)strlen(name) == size && memcmp(name, at + start, (size_t)size) == 0) {
            Py_INCREF(methods_interned[n]);
            return methods_interned[n];
        }
    }
    return PyUnicode_Substring(text, start, start + size);
}

/* cseq_parts(text) -> (seq, method) | None: a CSeq's number and method where `text` is ASCII,
 * its number 1 to 9 digits (so within CSeq's 2**31 - 1) and its method a token, with blanks
 * around and between them as `str.split` takes them; None for any other text. */
static PyObject *cseq_parts(PyObject *module, PyObject *text) {
    (void)module;
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "cseq_parts(text: str)");
        return NULL;
    }
    if (PyUnicode_READY(text) < 0) return NULL;
    if (!PyUnicode_IS_ASCII(text)) Py_RETURN_NONE; /* its bytes are not its characters */
    const unsigned char *at = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text), i = 0;
    while (i < size && is_split_space(at[i])) i++;
    Py_ssize_t digits = i;
    long seq = 0;
    for (; i < size && at[i] >= '0' && at[i] <= '9'; i++) {
        if (i - digits == 9) Py_RETURN_NONE; /* ten digits or more: Python checks the range */
        seq = seq * 10 + (at[i] - '0');
    }
    if (i == digits || i == size || !is_split_space(at[i])) Py_RETURN_NONE;
    while (i < size && is_split_space(at[i])) i++;
    Py_ssize_t method = i;
    for (; i < size && is_token_char[at[i]]; i++) {
    }
    Py_ssize_t method_end = i;
    while (i < size && is_split_space(at[i])) i++;
    if (method_end == method || i != size) Py_RETURN_NONE;
    PyObject *name = method_of(text, at, method, method_end - method);
    if (name == NULL) return NULL;
    PyObject *number = PyLong_FromLong(seq);
    if (number == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    PyObject *parts = PyTuple_New(2);
    if (parts == NULL) {
        Py_DECREF(name);
        Py_DECREF(number);
        return NULL;
    }
    PyTuple_SET_ITEM(parts, 0, number);
    PyTuple_SET_ITEM(parts, 1, name);
    return parts;
}

static PyMethodDef methods[] = {
    {"is_call_id", is_call_id, METH_O,
     "Whether a str is a Call-ID (word or word@word), as values._CALL_ID fullmatches it."},
    {"cseq_parts", cseq_parts, METH_O,
     "A plain CSeq's (number, method), or None for values.parse_cseq to read (see _values.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "shared.sip._values", "The small header values in C (see _values.c).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__values(void) {
    if (!ready) {
        for (const char *c = call_id_chars; *c; c++) is_call_id_char[(unsigned char)*c] = 1;
        for (const char *c = token_chars; *c; c++) is_token_char[(unsigned char)*c] = 1;
        for (int n = 0; n < METHODS; n++) {
            methods_interned[n] = PyUnicode_InternFromString(method_names[n]);
            if (methods_interned[n] == NULL) return NULL;
        }
        ready = 1;
    }
    return PyModule_Create(&module_def);
}
