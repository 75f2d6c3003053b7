/* A UDP socket's datagrams read and sent in as few system calls as the kernel allows.
 *
 * Reading: `datagrams.read_each` reads a burst one `recvmsg` at a time, and learns that the
 * socket is empty from one more `recvmsg` that fails with EAGAIN: a system call, and in
 * CPython an OSError built (its message through strerror) and dropped, about 9,000
 * instructions, on every wake-up. Here `recvmmsg` reads up to VLEN datagrams per call, and
 * an empty socket is a short count or EAGAIN seen in C, no exception made. Each datagram
 * comes out as `read_each` gives it: (data, host, port, the kernel's SO_TIMESTAMPNS stamp in
 * wall-clock seconds or 0.0 without one).
 *
 * Sending: what the handling of a burst sent is held (`udp.HeldSends`) and leaves here by
 * `sendmmsg`, up to SEND_VLEN datagrams per system call, where `datagrams.send_each` makes
 * one `sendto` each. Only what C can say exactly as `socket.sendto` would is sent here: a
 * bytes object to a numeric IPv4 or IPv6 host (an ASCII str) and a port in range, from an
 * IPv6 socket that is IPv6-only as `open_udp` makes them (on one that is not, the kernel
 * would take an IPv4 host, which `sendto` refuses). The first datagram that
 * is not, or that the kernel refuses, ends the call, and its index is returned: the caller
 * sends that one through `socket.sendto`, which raises or logs why, and goes on after it.
 * tests/shared/sip/transport/test_datagrams.py runs one suite against both languages.
 *
 * The buffers are static, used with the GIL held (the socket is non-blocking, so the call
 * never waits): VLEN * RECEIVE_SIZE bytes of address space, of which only the pages the
 * kernel writes into become resident. Every datagram of a call is copied out into objects
 * that cannot start the cyclic GC (bytes, str, int, float) before the first tuple is made:
 * a collection may run finalizers, hence Python code, which could read again into them.
 * A send points its vectors at the held bytes objects, which its caller's list keeps alive,
 * and runs no Python code between filling them and the system call.
 *
 * Built with the compiled fast path (`deploy/extensions.py`); CALLMESH_NO_EXTENSIONS=1 (or no
 * build) leaves it out and `read_each` and `send_each` do the work.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h> /* first: its pyconfig.h defines _GNU_SOURCE, which recvmmsg needs */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define VLEN 16
#define SEND_VLEN 64 /* datagrams per sendmmsg: a flush is rarely more */
#define RECEIVE_SIZE 65536 /* any datagram whole (datagrams.RECEIVE_SIZE) */
#define CONTROL_SIZE 64    /* room for one SO_TIMESTAMPNS message, CMSG_SPACE(16) == 32 */

#ifndef SO_TIMESTAMPNS
#define SO_TIMESTAMPNS 35
#endif

static char buffers[VLEN][RECEIVE_SIZE];
static union {
    struct cmsghdr aligned; /* CMSG_FIRSTHDR reads a struct cmsghdr from the buffer's start */
    char bytes[CONTROL_SIZE];
} controls[VLEN];
static struct sockaddr_storage sources[VLEN];
static struct mmsghdr headers[VLEN];
static struct iovec vectors[VLEN];

static union {
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} destinations[SEND_VLEN];
static struct mmsghdr sends[SEND_VLEN];
static struct iovec send_vectors[SEND_VLEN];

/* The source's numeric host, as CPython's socket module writes it (inet_ntop), and port;
 * ("", 0) for a source without an IP address (a Unix socket's, or none given). */
static int source_of(const struct sockaddr_storage *source, socklen_t size, PyObject **host,
                     long *port) {
    char text[INET6_ADDRSTRLEN];
    const void *address;
    if (source->ss_family == AF_INET && size >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)source;
        address = &in->sin_addr;
        *port = ntohs(in->sin_port);
    } else if (source->ss_family == AF_INET6 && size >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)source;
        address = &in6->sin6_addr;
        *port = ntohs(in6->sin6_port);
    } else {
        *host = PyUnicode_FromStringAndSize(NULL, 0);
        *port = 0;
        return *host == NULL ? -1 : 0;
    }
    if (inet_ntop(source->ss_family, address, text, sizeof(text)) == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    *host = PyUnicode_FromString(text);
    return *host == NULL ? -1 : 0;
}

/* The kernel's receive stamp of a datagram in wall-clock seconds, 0.0 when it has none. */
static double stamp_of(struct msghdr *header) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(header); c != NULL; c = CMSG_NXTHDR(header, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec stamp;
            memcpy(&stamp, CMSG_DATA(c), sizeof(stamp));
            /* as read_each: seconds + nanoseconds * 1e-9, in doubles */
            return (double)stamp.tv_sec + (double)stamp.tv_nsec * 1e-9;
        }
    }
    return 0.0;
}

/* The fields of datagram `i` (data, host, port, stamp) as new references; -1 on an error,
 * with none left. */
static int fields_of(unsigned int i, PyObject **fields) {
    PyObject *host;
    long port;
    struct msghdr *header = &headers[i].msg_hdr;
    if (source_of(&sources[i], header->msg_namelen, &host, &port) < 0) return -1;
    fields[0] = PyBytes_FromStringAndSize(buffers[i], (Py_ssize_t)headers[i].msg_len);
    fields[1] = host;
    fields[2] = PyLong_FromLong(port);
    fields[3] = PyFloat_FromDouble(stamp_of(header));
    if (fields[0] == NULL || fields[2] == NULL || fields[3] == NULL) {
        for (int f = 0; f < 4; f++) Py_CLEAR(fields[f]);
        return -1;
    }
    return 0;
}

/* Append `got` datagrams to `burst`, all copied out of the buffers first; -1 on an error. */
static int append_all(PyObject *burst, int got) {
    PyObject *fields[VLEN][4];
    int copied = 0;
    for (; copied < got; copied++) {
        if (fields_of((unsigned int)copied, fields[copied]) < 0) break;
    }
    int failed = copied < got;
    for (int i = 0; i < copied; i++) {
        PyObject *item = failed ? NULL : PyTuple_New(4);
        if (item == NULL) {
            failed = 1;
            for (int f = 0; f < 4; f++) Py_DECREF(fields[i][f]);
            continue;
        }
        for (int f = 0; f < 4; f++) PyTuple_SET_ITEM(item, f, fields[i][f]);
        if (PyList_Append(burst, item) < 0) failed = 1;
        Py_DECREF(item);
    }
    return failed ? -1 : 0;
}

static PyObject *fileno_name; /* "fileno", interned once (PyInit__datagrams) */

/* The file descriptor of `sock` (anything with a fileno()); -1 with an error set, EBADF for
 * a closed socket's -1, as its own calls would say.  Asked by an interned name: by a C
 * string (`PyObject_CallMethod`) each call made and hashed a new str, some 1,000
 * instructions a datagram read or burst sent (callgrind, `bench.proxy.runtime_calls`). */
static int descriptor_of(PyObject *sock) {
    PyObject *number = PyObject_CallMethodNoArgs(sock, fileno_name);
    if (number == NULL) return -1;
    long fd = PyLong_AsLong(number);
    Py_DECREF(number);
    if (fd == -1 && PyErr_Occurred()) return -1;
    if (fd < 0 || fd > INT_MAX) {
        errno = EBADF;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return (int)fd;
}

/* read_datagrams(sock, limit): at most `limit` datagrams waiting on `sock` (anything with a
 * fileno(); a closed socket's -1 is EBADF, as its recvmsg says), as a list of (data, host,
 * port, stamp); an empty list when none waits. An error of the kernel is raised as OSError
 * when no datagram was read before it, and ends the burst otherwise (as in read_each). */
static PyObject *read_datagrams(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read_datagrams(sock, limit) takes two arguments");
        return NULL;
    }
    int fd = descriptor_of(args[0]);
    if (fd < 0) return NULL;
    Py_ssize_t limit = PyNumber_AsSsize_t(args[1], NULL); /* as range(): any index, clipped */
    if (limit == -1 && PyErr_Occurred()) return NULL;
    PyObject *burst = PyList_New(0);
    if (burst == NULL) return NULL;
    Py_ssize_t total = 0;
    while (total < limit) {
        unsigned int want = (unsigned int)(limit - total < VLEN ? limit - total : VLEN);
        for (unsigned int i = 0; i < want; i++) {
            vectors[i].iov_base = buffers[i];
            vectors[i].iov_len = RECEIVE_SIZE;
            struct msghdr *header = &headers[i].msg_hdr;
            sources[i].ss_family = AF_UNSPEC; /* no stale address where the kernel gives none */
            header->msg_name = &sources[i];
            header->msg_namelen = sizeof(sources[i]);
            header->msg_iov = &vectors[i];
            header->msg_iovlen = 1;
            header->msg_control = controls[i].bytes;
            header->msg_controllen = CONTROL_SIZE;
            header->msg_flags = 0;
            headers[i].msg_len = 0;
        }
        int got = recvmmsg(fd, headers, want, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || total > 0) break;
            PyErr_SetFromErrno(PyExc_OSError);
            Py_DECREF(burst);
            return NULL;
        }
        if (append_all(burst, got) < 0) {
            Py_DECREF(burst);
            return NULL;
        }
        total += got;
        if ((unsigned int)got < want) break;
    }
    return burst;
}

/* Fill send slot `slot` from `item`, a held (data, (host, port)); 0 when it is one C sends
 * exactly as socket.sendto would (bytes, a numeric host without anything after it, a port
 * in 0-65535), -1 otherwise, with no error set: socket.sendto then says what is wrong. */
static int prepare_send(unsigned int slot, PyObject *item) {
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) return -1;
    PyObject *data = PyTuple_GET_ITEM(item, 0);
    PyObject *address = PyTuple_GET_ITEM(item, 1);
    if (!PyBytes_CheckExact(data) || !PyTuple_CheckExact(address) ||
        PyTuple_GET_SIZE(address) != 2) {
        return -1;
    }
    PyObject *host = PyTuple_GET_ITEM(address, 0);
    PyObject *port_number = PyTuple_GET_ITEM(address, 1);
    /* A compact ASCII str holds its text NUL-terminated: read without making anything, so
     * no Python code (a collection's finalizers) runs while slots point into held bytes. */
    if (!PyUnicode_CheckExact(host) || !PyUnicode_IS_COMPACT_ASCII(host) ||
        !PyLong_CheckExact(port_number)) {
        return -1;
    }
    Py_ssize_t size = PyUnicode_GET_LENGTH(host);
    const char *text = (const char *)PyUnicode_DATA(host);
    if (size == 0 || size >= INET6_ADDRSTRLEN || strlen(text) != (size_t)size) return -1;
    int overflow;
    long port = PyLong_AsLongAndOverflow(port_number, &overflow);
    if (overflow || port < 0 || port > 65535) return -1;
    struct msghdr *header = &sends[slot].msg_hdr;
    memset(&destinations[slot], 0, sizeof(destinations[slot]));
    if (memchr(text, ':', (size_t)size) == NULL) {
        struct sockaddr_in *in = &destinations[slot].in;
        if (inet_pton(AF_INET, text, &in->sin_addr) != 1) return -1;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        header->msg_namelen = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = &destinations[slot].in6;
        if (inet_pton(AF_INET6, text, &in6->sin6_addr) != 1) return -1;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        header->msg_namelen = sizeof(*in6);
    }
    send_vectors[slot].iov_base = PyBytes_AS_STRING(data);
    send_vectors[slot].iov_len = (size_t)PyBytes_GET_SIZE(data);
    header->msg_name = &destinations[slot];
    header->msg_iov = &send_vectors[slot];
    header->msg_iovlen = 1;
    header->msg_control = NULL;
    header->msg_controllen = 0;
    header->msg_flags = 0;
    sends[slot].msg_len = 0;
    return 0;
}

/* send_datagrams(sock, held, start): send held[start:], a list of (data, (host, port)), in
 * order, from `sock`; the index of the first one not sent (len(held) when all were): one C
 * cannot send as socket.sendto would, or one the kernel refused. Never raises for what it
 * sends (nor for a closed socket, whose first datagram is then the one not sent): only for
 * arguments of the wrong kinds. */
static PyObject *send_datagrams(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3 || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "send_datagrams(sock, held: list, start) takes three");
        return NULL;
    }
    PyObject *held = args[1];
    Py_ssize_t next = PyNumber_AsSsize_t(args[2], NULL);
    if (next == -1 && PyErr_Occurred()) return NULL;
    if (next < 0) next = 0;
    if (next > PyList_GET_SIZE(held)) next = PyList_GET_SIZE(held);
    int fd = descriptor_of(args[0]);
    if (fd < 0) { /* a closed socket: held[next] is for socket.sendto to explain */
        PyErr_Clear();
        return PyLong_FromSsize_t(next);
    }
    while (next < PyList_GET_SIZE(held)) {
        Py_ssize_t left = PyList_GET_SIZE(held) - next;
        unsigned int want = 0;
        while (want < SEND_VLEN && want < left &&
               prepare_send(want, PyList_GET_ITEM(held, next + want)) == 0) {
            want++;
        }
        if (want == 0) break; /* held[next] is for socket.sendto to send or explain */
        int sent = sendmmsg(fd, sends, want, MSG_DONTWAIT);
        if (sent <= 0) break; /* refused: socket.sendto tries it again and logs why */
        next += sent;
        if ((unsigned int)sent < want) break; /* the kernel refused held[next] */
    }
    return PyLong_FromSsize_t(next);
}

static PyMethodDef methods[] = {
    {"read_datagrams", (PyCFunction)(void (*)(void))read_datagrams, METH_FASTCALL,
     "At most `limit` datagrams waiting on a socket, as datagrams.read_each reads them."},
    {"send_datagrams", (PyCFunction)(void (*)(void))send_datagrams, METH_FASTCALL,
     "Send held[start:] as datagrams.send_each does; the index of the first not sent."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "shared.sip.transport._datagrams",
    "A UDP socket's datagrams by recvmmsg and sendmmsg (see _datagrams.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__datagrams(void) {
    if (fileno_name == NULL) { /* once per process, should the module be initialised again */
        fileno_name = PyUnicode_InternFromString("fileno");
        if (fileno_name == NULL) return NULL;
    }
    return PyModule_Create(&module_def);
}
