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
 * kernel writes into become resident.
 *
 * Built with the compiled fast path (`deploy/extensions.py`); CALLMESH_NO_EXTENSIONS=1 (or no
 * build) leaves it out and `read_each` reads every burst.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h> /* first: its pyconfig.h defines _GNU_SOURCE, which recvmmsg needs */
#include <arpa/inet.h>
#include <errno.h>
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
static char controls[VLEN][CONTROL_SIZE];
static struct sockaddr_storage sources[VLEN];
static struct mmsghdr headers[VLEN];
static struct iovec vectors[VLEN];

/* The source's numeric host, as CPython's socket module writes it (inet_ntop), and port. */
static int source_of(const struct sockaddr_storage *source, PyObject **host, long *port) {
    char text[INET6_ADDRSTRLEN];
    const void *address;
    if (source->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)source;
        address = &in->sin_addr;
        *port = ntohs(in->sin_port);
    } else if (source->ss_family == AF_INET6) {
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

static PyObject *datagram(unsigned int i) {
    PyObject *host;
    long port;
    if (source_of(&sources[i], &host, &port) < 0) return NULL;
    struct msghdr *header = &headers[i].msg_hdr;
    PyObject *data = PyBytes_FromStringAndSize(buffers[i], (Py_ssize_t)headers[i].msg_len);
    PyObject *number = PyLong_FromLong(port);
    PyObject *stamp = PyFloat_FromDouble(stamp_of(header));
    if (data == NULL || number == NULL || stamp == NULL) {
        Py_XDECREF(data);
        Py_XDECREF(number);
        Py_XDECREF(stamp);
        Py_DECREF(host);
        return NULL;
    }
    PyObject *item = PyTuple_New(4);
    if (item == NULL) {
        Py_DECREF(data);
        Py_DECREF(number);
        Py_DECREF(stamp);
        Py_DECREF(host);
        return NULL;
    }
    PyTuple_SET_ITEM(item, 0, data);
    PyTuple_SET_ITEM(item, 1, host);
    PyTuple_SET_ITEM(item, 2, number);
    PyTuple_SET_ITEM(item, 3, stamp);
    return item;
}

/* read_datagrams(sock, limit): at most `limit` datagrams waiting on `sock` (anything with a
 * fileno()), as a list of (data, host, port, stamp); an empty list when none waits. An error
 * of the kernel is raised as OSError when no datagram was read before it, and ends the burst
 * otherwise (as in read_each). */
static PyObject *read_datagrams(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read_datagrams(sock, limit) takes two arguments");
        return NULL;
    }
    int fd = PyObject_AsFileDescriptor(args[0]);
    if (fd < 0) return NULL;
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
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
            header->msg_name = &sources[i];
            header->msg_namelen = sizeof(sources[i]);
            header->msg_iov = &vectors[i];
            header->msg_iovlen = 1;
            header->msg_control = controls[i];
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
        for (int i = 0; i < got; i++) {
            PyObject *item = datagram((unsigned int)i);
            if (item == NULL || PyList_Append(burst, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(burst);
                return NULL;
            }
            Py_DECREF(item);
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
