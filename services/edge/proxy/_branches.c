/* The hash inside the edge's Via branches in C: what `branches._hash_in_python` does in Python.
 *
 * Every forwarded request's branch carries hashes of some of its fields (`branches.py`: the
 * loop hash, and the branch that stays the same for a retransmission; five a call).  In
 * Python each one joins the fields, encodes the text, makes a `hashlib.blake2b` object (its
 * keyword arguments parsed) and formats its digest: about 5,000 instructions compiled, where
 * the hash itself, one or two blocks, is a fifth of that.  This module hashes the fields'
 * UTF-8 as they are, with the NUL between them, in one call.
 *
 * `branch_hash(parts)`: `parts` a list or tuple of str; returns the BLAKE2b hash (RFC 7693,
 * no key, an 8-byte digest) of "\0".join(parts) encoded as UTF-8, as 16 lower-case hex
 * digits: `hashlib.blake2b(..., digest_size=8).hexdigest()`.  An item that is not a str is a
 * TypeError, and text that UTF-8 cannot hold (a lone surrogate) the UnicodeEncodeError that
 * `str.encode` raises.
 *
 * Built with the compiled fast path (`deploy/extensions.py`); CALLMESH_NO_EXTENSIONS=1 (or no
 * build) leaves it out and `branches.py` hashes with `hashlib`.  The tests hash the same parts
 * both ways (`tests/services/edge/proxy/test_branches_in_c.py`).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 128
#define DIGEST 8
#define ON_STACK 1024 /* the joined parts up to this size need no allocation */

static const uint64_t IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

/* The message schedule: which words each round mixes, in order (RFC 7693 §2.7). */
static const uint8_t SIGMA[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

static inline uint64_t rotate_right(uint64_t word, unsigned bits) {
    return (word >> bits) | (word << (64 - bits));
}

/* A block's sixteen words, little-endian: copied as they are where the machine is so (a
 * byte at a time cost a quarter of the hash). */
static inline void read_words(uint64_t m[16], const unsigned char *block) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(m, block, 16 * sizeof m[0]);
#else
    for (int n = 0; n < 16; n++) {
        uint64_t word = 0;
        for (int at = 7; at >= 0; at--) word = (word << 8) | block[8 * n + at];
        m[n] = word;
    }
#endif
}

#define MIX(a, b, c, d, x, y)                   \
    do {                                        \
        v[a] = v[a] + v[b] + (x);               \
        v[d] = rotate_right(v[d] ^ v[a], 32);   \
        v[c] = v[c] + v[d];                     \
        v[b] = rotate_right(v[b] ^ v[c], 24);   \
        v[a] = v[a] + v[b] + (y);               \
        v[d] = rotate_right(v[d] ^ v[a], 16);   \
        v[c] = v[c] + v[d];                     \
        v[b] = rotate_right(v[b] ^ v[c], 63);   \
    } while (0)

/* One block into the state `h`; `counted` the bytes hashed so far, this block's included. */
static void compress(uint64_t h[8], const unsigned char *block, uint64_t counted, int last) {
    uint64_t m[16], v[16];
    read_words(m, block);
    for (int n = 0; n < 8; n++) {
        v[n] = h[n];
        v[n + 8] = IV[n];
    }
    v[12] ^= counted; /* the counter's high word stays 0: no message here is 2^64 bytes */
    if (last) v[14] = ~v[14];
#pragma GCC unroll 12 /* each round's schedule a constant: the words it mixes are registers */
    for (int round = 0; round < 12; round++) {
        const uint8_t *s = SIGMA[round % 10];
        MIX(0, 4, 8, 12, m[s[0]], m[s[1]]);
        MIX(1, 5, 9, 13, m[s[2]], m[s[3]]);
        MIX(2, 6, 10, 14, m[s[4]], m[s[5]]);
        MIX(3, 7, 11, 15, m[s[6]], m[s[7]]);
        MIX(0, 5, 10, 15, m[s[8]], m[s[9]]);
        MIX(1, 6, 11, 12, m[s[10]], m[s[11]]);
        MIX(2, 7, 8, 13, m[s[12]], m[s[13]]);
        MIX(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (int n = 0; n < 8; n++) h[n] ^= v[n] ^ v[n + 8];
}

/* BLAKE2b of `length` bytes at `text`, unkeyed, a DIGEST-byte digest into `digest`. */
static void blake2b(const unsigned char *text, size_t length, unsigned char digest[DIGEST]) {
    uint64_t h[8];
    memcpy(h, IV, sizeof h);
    h[0] ^= 0x01010000ULL ^ DIGEST; /* depth 1, fan-out 1, no key, the digest's length */
    size_t done = 0;
    while (length - done > BLOCK) { /* every block but the last, which is flagged */
        compress(h, text + done, done + BLOCK, 0);
        done += BLOCK;
    }
    unsigned char last[BLOCK] = {0};
    memcpy(last, text + done, length - done);
    compress(h, last, length, 1);
    for (int n = 0; n < DIGEST; n++) digest[n] = (unsigned char)(h[n / 8] >> (8 * (n % 8)));
}

static PyObject *branch_hash(PyObject *module, PyObject *parts) {
    PyObject *items = PySequence_Fast(parts, "branch_hash(parts): parts must be a list or tuple");
    if (items == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    PyObject **item = PySequence_Fast_ITEMS(items);
    size_t length = count > 0 ? (size_t)count - 1 : 0; /* the NULs between the parts */
    for (Py_ssize_t n = 0; n < count; n++) {
        if (!PyUnicode_Check(item[n])) {
            PyErr_SetString(PyExc_TypeError, "branch_hash(parts): every part must be a str");
            Py_DECREF(items);
            return NULL;
        }
        Py_ssize_t size;
        if (PyUnicode_AsUTF8AndSize(item[n], &size) == NULL) { /* a lone surrogate */
            Py_DECREF(items);
            return NULL;
        }
        if ((size_t)size > SIZE_MAX - length) { /* only a 32-bit build's caller's bug reaches it */
            Py_DECREF(items);
            return PyErr_NoMemory();
        }
        length += (size_t)size;
    }
    unsigned char on_stack[ON_STACK];
    unsigned char *joined = length <= ON_STACK ? on_stack : PyMem_Malloc(length);
    if (joined == NULL) {
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    size_t at = 0;
    for (Py_ssize_t n = 0; n < count; n++) {
        Py_ssize_t size;
        const char *text = PyUnicode_AsUTF8AndSize(item[n], &size); /* kept: read above */
        if (n > 0) joined[at++] = 0;
        memcpy(joined + at, text, (size_t)size);
        at += (size_t)size;
    }
    Py_DECREF(items);
    unsigned char digest[DIGEST];
    blake2b(joined, length, digest);
    if (joined != on_stack) PyMem_Free(joined);
    PyObject *hex = PyUnicode_New(2 * DIGEST, 127);
    if (hex == NULL) return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(hex);
    static const char DIGITS[] = "0123456789abcdef";
    for (int n = 0; n < DIGEST; n++) {
        out[2 * n] = (Py_UCS1)DIGITS[digest[n] >> 4];
        out[2 * n + 1] = (Py_UCS1)DIGITS[digest[n] & 15];
    }
    return hex;
}

static PyMethodDef methods[] = {
    {"branch_hash", branch_hash, METH_O,
     "The BLAKE2b-64 of the parts joined by NUL, in hex (see _branches.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "services.edge.proxy._branches",
    "The hash inside the edge's Via branches in C (see _branches.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__branches(void) { return PyModule_Create(&module_def); }
