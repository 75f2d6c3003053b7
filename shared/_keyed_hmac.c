/* HMAC-SHA256 from states keyed once, in C: what `keyed_hmac.KeyedHmac.digest` does with hashlib.
 *
 * The edge signs or checks three Record-Route tokens a call (`services/edge/proxy/dialogs.py`),
 * each an HMAC of a Call-ID under a key that does not change.  With hashlib that is two copies
 * of keyed SHA-256 objects, two updates and two digests per message: six calls, each copy an
 * OpenSSL context made and wiped, about 11,000 instructions compiled for a message of one
 * block.  Here the two keyed states are 64 bytes computed once, and a message is hashed on
 * copies of them on the stack: two compressions for a Call-ID, one call.
 *
 * `hmac_states(padded)`: `padded` the key as RFC 2104 pads it (64 bytes: a longer key hashed
 * first, by the caller); returns the SHA-256 states after the inner (key XOR 0x36) and outer
 * (key XOR 0x5c) blocks, 32 bytes each, big-endian.  `hmac_digest(states, message)`: the
 * 32-byte HMAC-SHA256 of the bytes `message` under those states.  A wrong length or type is a
 * TypeError or ValueError.  SHA-256 as FIPS 180-4 defines it (its constants in this file are
 * the standard's, checked by the tests against hashlib).
 *
 * A block is compressed with the CPU's SHA extensions where it has them (x86-64: Intel since
 * Goldmont and Ice Lake, AMD since Zen), asked once at import (CPUID): 169 instructions a
 * block, straight-line, where the portable compression below takes about 3,450; the proxy
 * core hashes six blocks a call.
 * `use_sha_extensions(flag)` turns them off (or on again where the CPU has them) and returns
 * `compression()`, the one in use ("sha extensions" or "portable"): the tests hold both to
 * hashlib's answer on the same machine, and the benchmark times both.  Valgrind's CPU has none,
 * so callgrind counts the portable one.
 *
 * Built with the compiled fast path (`deploy/extensions.py`); CALLMESH_NO_EXTENSIONS=1 (or no
 * build) leaves it out and `keyed_hmac.py` uses hashlib.  The tests compare both with `hmac`
 * (`tests/shared/test_keyed_hmac.py`).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SHA_EXTENSIONS 1
#include <cpuid.h>
#include <immintrin.h>
#endif

#define BLOCK 64
#define STATE 32

static const uint32_t IV[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t rotate_right(uint32_t word, unsigned bits) {
    return (word >> bits) | (word << (32 - bits));
}

static inline uint32_t big_endian(const unsigned char *bytes) {
    return ((uint32_t)bytes[0] << 24) | ((uint32_t)bytes[1] << 16) | ((uint32_t)bytes[2] << 8) |
           (uint32_t)bytes[3];
}

static void put_big_endian(unsigned char *bytes, uint32_t word) {
    bytes[0] = (unsigned char)(word >> 24);
    bytes[1] = (unsigned char)(word >> 16);
    bytes[2] = (unsigned char)(word >> 8);
    bytes[3] = (unsigned char)word;
}

/* One 64-byte block into the state `h` (FIPS 180-4 §6.2.2), portably. */
static void compress_portably(uint32_t h[8], const unsigned char *block) {
    uint32_t w[64];
    for (int t = 0; t < 16; t++) w[t] = big_endian(block + 4 * t);
#pragma GCC unroll 48
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = rotate_right(w[t - 15], 7) ^ rotate_right(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = rotate_right(w[t - 2], 17) ^ rotate_right(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
#pragma GCC unroll 64 /* the variables' rotation becomes renaming, K[t] a constant */
    for (int t = 0; t < 64; t++) {
        uint32_t sum1 = rotate_right(e, 6) ^ rotate_right(e, 11) ^ rotate_right(e, 25);
        uint32_t choice = g ^ (e & (f ^ g));         /* (e & f) ^ (~e & g), one operation less */
        uint32_t first = k + sum1 + choice + K[t] + w[t];
        uint32_t sum0 = rotate_right(a, 2) ^ rotate_right(a, 13) ^ rotate_right(a, 22);
        uint32_t majority = (a & b) | (c & (a | b)); /* (a & b) ^ (a & c) ^ (b & c) */
        k = g;
        g = f;
        f = e;
        e = d + first;
        d = c;
        c = b;
        b = a;
        a = first + sum0 + majority;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

#ifdef HAVE_SHA_EXTENSIONS
/* The same with the SHA extensions.  They keep the eight words as two registers, (a, b, e, f)
 * and (c, d, g, h), each lane-reversed; `sha256rnds2` runs two rounds (the lower half of its
 * message operand), after which the old (a, b, e, f) is the new (c, d, g, h), so the two
 * registers trade roles.  The message schedule grows four words at a time: `sha256msg1` gives
 * W[t-16] + s0(W[t-15]), the add W[t-7] (the previous two groups, shifted by a word), and
 * `sha256msg2` s1(W[t-2]). */
__attribute__((target("sha,sse4.1,ssse3"))) static void compress_with_sha_extensions(
    uint32_t h[8], const unsigned char *block) {
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i dcba = _mm_loadu_si128((const __m128i *)h);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)(h + 4));
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
    __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
    const __m128i abef_before = abef, cdgh_before = cdgh;
    __m128i w[16];
#pragma GCC unroll 16
    for (int group = 0; group < 16; group++) {
        if (group < 4) {
            w[group] = _mm_shuffle_epi8(
                _mm_loadu_si128((const __m128i *)(block + 16 * group)), swap);
        } else {
            __m128i partial = _mm_sha256msg1_epu32(w[group - 4], w[group - 3]);
            partial = _mm_add_epi32(partial, _mm_alignr_epi8(w[group - 1], w[group - 2], 4));
            w[group] = _mm_sha256msg2_epu32(partial, w[group - 1]);
        }
        __m128i keys = _mm_loadu_si128((const __m128i *)(K + 4 * group));
        __m128i message = _mm_add_epi32(w[group], keys);
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, message);
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(message, 0x0E));
    }
    abef = _mm_add_epi32(abef, abef_before);
    cdgh = _mm_add_epi32(cdgh, cdgh_before);
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)h, _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)(h + 4), _mm_alignr_epi8(dchg, feba, 8));
}

/* Whether this CPU has the SHA extensions and the SSE4.1 and SSSE3 the code above also uses. */
static int cpu_has_sha_extensions_now(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3)) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b & (1u << 29)) != 0; /* CPUID.(EAX=7,ECX=0):EBX.SHA[bit 29] */
}

/* What CPUID said at import. */
static int cpu_has_sha_extensions;
#endif

/* Which compression this process uses: chosen at import, or by `use_sha_extensions`. */
static void (*compress)(uint32_t h[8], const unsigned char *block) = compress_portably;

/* `state` (after `before` bytes, a whole number of blocks) on to the end of `length` more
 * bytes at `text`, padded as the standard pads (§5.1.1); the hash into `out`. */
static void finish(const uint32_t state[8], uint64_t before, const unsigned char *text,
                   size_t length, unsigned char out[STATE]) {
    uint32_t h[8];
    memcpy(h, state, sizeof h);
    size_t done = 0;
    for (; length - done >= BLOCK; done += BLOCK) compress(h, text + done);
    unsigned char last[2 * BLOCK] = {0};
    size_t rest = length - done;
    memcpy(last, text + done, rest);
    last[rest] = 0x80;
    size_t blocks = rest + 9 <= BLOCK ? 1 : 2;
    uint64_t bits = (before + length) * 8;
    for (int n = 0; n < 8; n++) last[blocks * BLOCK - 1 - n] = (unsigned char)(bits >> (8 * n));
    compress(h, last);
    if (blocks == 2) compress(h, last + BLOCK);
    for (int n = 0; n < 8; n++) put_big_endian(out + 4 * n, h[n]);
}

static void read_state(uint32_t state[8], const unsigned char *bytes) {
    for (int n = 0; n < 8; n++) state[n] = big_endian(bytes + 4 * n);
}

static PyObject *hmac_states(PyObject *module, PyObject *padded) {
    if (!PyBytes_Check(padded) || PyBytes_GET_SIZE(padded) != BLOCK) {
        PyErr_SetString(PyExc_ValueError, "hmac_states(padded): the padded key is 64 bytes");
        return NULL;
    }
    const unsigned char *key = (const unsigned char *)PyBytes_AS_STRING(padded);
    unsigned char inner[BLOCK], outer[BLOCK];
    for (int n = 0; n < BLOCK; n++) {
        inner[n] = key[n] ^ 0x36;
        outer[n] = key[n] ^ 0x5c;
    }
    PyObject *states = PyBytes_FromStringAndSize(NULL, 2 * STATE);
    if (states == NULL) return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(states);
    uint32_t h[8];
    memcpy(h, IV, sizeof h);
    compress(h, inner);
    for (int n = 0; n < 8; n++) put_big_endian(out + 4 * n, h[n]);
    memcpy(h, IV, sizeof h);
    compress(h, outer);
    for (int n = 0; n < 8; n++) put_big_endian(out + STATE + 4 * n, h[n]);
    return states;
}

static PyObject *hmac_digest(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "hmac_digest(states, message) takes two arguments");
        return NULL;
    }
    PyObject *states = args[0], *message = args[1];
    if (!PyBytes_Check(states) || PyBytes_GET_SIZE(states) != 2 * STATE) {
        PyErr_SetString(PyExc_ValueError, "hmac_digest: states are the 64 bytes of hmac_states");
        return NULL;
    }
    if (!PyBytes_Check(message)) {
        PyErr_SetString(PyExc_TypeError, "hmac_digest: the message must be bytes");
        return NULL;
    }
    const unsigned char *keyed = (const unsigned char *)PyBytes_AS_STRING(states);
    uint32_t inner[8], outer[8];
    read_state(inner, keyed);
    read_state(outer, keyed + STATE);
    unsigned char inner_hash[STATE];
    finish(inner, BLOCK, (const unsigned char *)PyBytes_AS_STRING(message),
           (size_t)PyBytes_GET_SIZE(message), inner_hash);
    PyObject *digest = PyBytes_FromStringAndSize(NULL, STATE);
    if (digest == NULL) return NULL;
    finish(outer, BLOCK, inner_hash, STATE, (unsigned char *)PyBytes_AS_STRING(digest));
    return digest;
}

static PyObject *compression(PyObject *module, PyObject *unused) {
    return PyUnicode_FromString(compress == compress_portably ? "portable" : "sha extensions");
}

static PyObject *use_sha_extensions(PyObject *module, PyObject *flag) {
    int wanted = PyObject_IsTrue(flag);
    if (wanted < 0) return NULL;
    compress = compress_portably;
#ifdef HAVE_SHA_EXTENSIONS
    if (wanted && cpu_has_sha_extensions) compress = compress_with_sha_extensions;
#endif
    return compression(module, NULL);
}

static PyMethodDef methods[] = {
    {"hmac_states", hmac_states, METH_O,
     "The SHA-256 states after the padded key's inner and outer blocks (see _keyed_hmac.c)."},
    {"hmac_digest", (PyCFunction)(void (*)(void))hmac_digest, METH_FASTCALL,
     "HMAC-SHA256 of message from hmac_states' states (see _keyed_hmac.c)."},
    {"compression", compression, METH_NOARGS,
     "The compression in use: 'sha extensions' or 'portable' (see _keyed_hmac.c)."},
    {"use_sha_extensions", use_sha_extensions, METH_O,
     "Compress with the CPU's SHA extensions if flag and it has them; compression() after."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "shared._keyed_hmac",
    "HMAC-SHA256 from states keyed once, in C (see _keyed_hmac.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__keyed_hmac(void) {
#ifdef HAVE_SHA_EXTENSIONS
    cpu_has_sha_extensions = cpu_has_sha_extensions_now();
    if (cpu_has_sha_extensions) compress = compress_with_sha_extensions;
#endif
    return PyModule_Create(&module_def);
}
