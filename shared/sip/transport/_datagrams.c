/* A UDP socket's waiting datagrams read in as few system calls as the kernel allows.
 *
 * `datagrams.read_each` reads a burst one `recvmsg` at a time, and learns that the socket is
 * empty from one more `recvmsg` that fails with EAGAIN: a system call, and in CPython an
 * OSError built (its message through strerror) and dropped, about 9,000 instructions, on
 * every wake-up. Here `recvmmsg` reads up to VLEN datagrams per call, and an empty socket
 * is a short count or EAGAIN seen in C, no exception made. Each datagram comes out as
 * `read_each` gives it: (data, host, port, the kernel's SO_TIMESTAMPNS stamp in wall-clock
 * seconds or 0.0 without one); tests/shared/sip/transport/test_datagrams.py runs one suite
 * against both.
 *
 * The buffers are static, used with the GIL held (the socket is non-blocking, so the call
 * never waits): VLEN * RECEIVE_SIZE bytes of address space, of which only the pages the
 * kernel writes into become resident. Every datagram of a call is copied out into objects
 * that cannot start the cyclic GC (bytes, str, int, float) before the first tuple is made:
 * a collection may run finalizers, hence Python code, which could read again into them.
 *
 * Built with the compiled fast path (`deploy/extensions.py`); CALLMESH_NO_EXTENSIONS=1 (or no
 * build) leaves it out and `read_each` reads every burst.
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
    PyObject *number = PyObject_CallMethod(args[0], "fileno", NULL);
    if (number == NULL) return NULL;
    long fd = PyLong_AsLong(number);
    Py_DECREF(number);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    if (fd < 0 || fd > INT_MAX) {
        errno = EBADF;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
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
        int got = recvmmsg((int)fd, headers, want, MSG_DONTWAIT, NULL);
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

static PyMethodDef methods[] = {
    {"read_datagrams", (PyCFunction)(void (*)(void))read_datagrams, METH_FASTCALL,
     "At most `limit` datagrams waiting on a socket, as datagrams.read_each reads them."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "shared.sip.transport._datagrams",
    "A UDP socket's waiting datagrams by recvmmsg (see _datagrams.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__datagrams(void) { return PyModule_Create(&module_def); }
